"""The shared throughput limiter: a phone number's messages per second and one message per recipient
per 6 s, held across every worker and host, handed out per batch.

``reserve`` answers for a whole batch in one round trip, before its sends are even loaded: each
number's current wall-clock second has ``limit`` slots (a hard count), and each number has a queue
of turns, one every 1/limit s from the next second on. Sends that already waited their turn
(``retrying``: queued by the limiter, or retried after an error) are served first; a new send takes
a slot now only while the number has no queue beyond this second, else it gets the turn after the
last one queued and waits for it (``next_attempt_at``). So a backlog of thousands drains at the
number's rate with each send claimed about twice, instead of every waiting send being claimed again
each second.
``take_pairs`` takes the recipients' 6-second slots (one round trip); ``give_back`` returns slots a
batch did not use within their second. Redis when ``Q_BROKER_URL`` or ``CACHE_URL`` is a Redis URL
(Lua scripts, atomic), the database otherwise (``ThroughputSlot`` rows, one short transaction).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

from django.conf import settings

from automation.engine import limiter_backends as backends

log = logging.getLogger(__name__)
PAIR_SECONDS = backends.PAIR_SECONDS
LimiterUnavailable = backends.LimiterUnavailable
# The sandbox and Meta count arrivals; a send admitted at the very end of a second may land in the
# next one, so a number is filled to this share of its rate.
DEFAULT_HEADROOM = 0.95
# A slot is good for the wall-clock second it was taken in; a request that could not leave before
# this much of the second is left over waits for the next one instead of landing there uncounted.
SECOND_GUARD = 0.1


def second_guard() -> float:
    return float(getattr(settings, "AUTOMATION_SECOND_GUARD", SECOND_GUARD))


def per_second_limit(throughput_mps: int) -> int:
    headroom = float(getattr(settings, "AUTOMATION_THROUGHPUT_HEADROOM", DEFAULT_HEADROOM))
    return max(1, math.floor(throughput_mps * headroom))


@dataclass(frozen=True)
class Ask:
    """What a batch wants of one number: sends that already waited their turn first, then new ones."""

    retrying: int
    new: int
    throughput_mps: int


@dataclass(frozen=True)
class Turns:
    """One number's answer: how many of each kind go now; the left-overs' turns (epoch seconds)."""

    retrying: int = 0
    new: int = 0
    new_from: float = 0.0  # the first new left-over's turn; the next ones every ``step``
    retrying_from: float = 0.0
    step: float = 0.0
    clock: float = 0.0  # the queue clock after this answer


def plan(ask: Ask, limit: int, used: int, clock: float, now: float) -> Turns:
    """The arithmetic both backends run atomically. ``used``: slots taken of this second; ``clock``:
    the turn after the last send queued on the number (a backlog while it is past this second)."""
    second, step = int(now), 1.0 / limit
    left = max(0, limit - used)
    retrying = min(ask.retrying, left)
    new = min(ask.new, left - retrying) if clock < second + 1 else 0
    queue_from = max(clock, second + 1.0)
    retrying_from = queue_from + (ask.new - new) * step
    waiting = ask.new - new + ask.retrying - retrying
    return Turns(retrying, new, round(queue_from, 6), round(retrying_from, 6), step,
                 round(queue_from + waiting * step, 6) if waiting else clock)


@dataclass(frozen=True)
class Reservation:
    second: int
    turns: dict[str, Turns] = field(default_factory=dict)
    late: bool = False  # asked in the guard at the end of the second: nothing granted

    def still_valid(self, now: float | None = None) -> bool:
        """True while a request can still arrive within the slots' second."""
        now = time.time() if now is None else now
        return not self.late and now < self.second + 1 - max(0.0, second_guard())


def reserve(asks: dict[str, Ask], *, now: float | None = None) -> Reservation:
    """Slots of each number's current second for the batch, and the left-overs' turns."""
    now = time.time() if now is None else now
    second = int(now)
    guard = second_guard()
    if guard > 0 and now >= second + 1 - guard:
        return Reservation(second, late=True)
    limits = {phone: per_second_limit(ask.throughput_mps) for phone, ask in asks.items() if ask.retrying + ask.new}
    if not limits:
        return Reservation(second)
    url = backends.redis_url()
    turns = backends.redis_reserve(url, asks, limits, now) if url else backends.db_reserve(asks, limits, now, plan)
    return Reservation(second, turns)


def take_pairs(pairs: list[tuple[str, str]], *, now: float | None = None) -> list[float]:
    """For each (phone_number_id, recipient): 0.0 when its 6-second slot was taken now, else the epoch
    time it frees up. A recipient twice in ``pairs`` gets the slot once."""
    if not pairs:
        return []
    now = time.time() if now is None else now
    url = backends.redis_url()
    return backends.redis_pairs(url, pairs, now) if url else backends.db_pairs(pairs, now)


def give_back(second: int, counts: dict[str, int]) -> None:
    """Return reserved slots a batch did not use (skipped, pair-limited), while their second lasts."""
    counts = {phone: n for phone, n in counts.items() if n > 0}
    if counts and time.time() < second + 1:
        url = backends.redis_url()
        try:
            backends.redis_give_back(url, second, counts) if url else backends.db_give_back(second, counts)
        except LimiterUnavailable as exc:  # the slots stay taken until their second ends: safe
            log.warning("unused limiter slots not given back: %s", exc)


def forget_pairs(pairs: list[tuple[str, str]]) -> None:
    """Give back recipients' slots that were taken but not used (their request never left)."""
    if pairs:
        url = backends.redis_url()
        try:
            backends.redis_forget_pairs(url, pairs) if url else backends.db_forget_pairs(pairs)
        except LimiterUnavailable as exc:  # those recipients wait out their 6 s: safe
            log.warning("unused recipient slots not given back: %s", exc)


def forget_old_slots(*, now: float | None = None) -> int:
    """Drop database slots that can no longer decide anything (the send pass calls this)."""
    if backends.redis_url():
        return 0
    return backends.db_forget_old(time.time() if now is None else now)


redis_url = backends.redis_url
