"""Sending one claimed batch: reserve the numbers' seconds, load and re-check the sends, take the
recipients' slots, turn the sendable ones ``unknown`` and POST them concurrently, record the answers.

Each POST goes through the Graph client, which never retries a POST that may have reached Meta; the
answers are recorded by outcomes.py (a throughput or transient error goes back to the queue with
``next_attempt_at``, a timeout leaves the send ``unknown``, 131050 opts the lead out, template errors
flag the rule). The POSTs leave from a small thread pool, each thread with its own Graph client (its
own keep-alive connections); only the pass's own thread touches the database. Sends turn ``unknown``
one pool-width chunk at a time, just before that chunk's requests leave, in the transaction that
records the previous chunk's answers, so a SIGKILL strands at most one chunk of sends whose request
never left (``unknown``, failed as unconfirmed a day later, never sent twice) and one chunk of
accepted sends whose answer was not written yet (``unknown`` until their status webhook).
"""
from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from automation.engine import claiming, limiter, outcomes
from automation.engine.batch import Batch
from automation.engine.claiming import Claim
from automation.engine.outcomes import NOT_CONNECTED_RETRY, Outgoing
from automation.engine.planning import account_zone, in_quiet_hours, out_of_quiet_hours
from automation.models import MessageSend
from automation.rendering import SendContext, graph_components, values_for
from crm_marketing.graph import GraphClient, GraphError
from meta_oauth.models import MetaConnection, WhatsAppChannel

log = logging.getLogger(__name__)
Status, Skip = MessageSend.Status, MessageSend.SkipReason
SEND_THREADS = 8
NO_TOKEN = ""
LIMITER_DOWN_RETRY = dt.timedelta(seconds=10)
LATE = object()  # a POST not made: its slot's second was over when its thread got to it


class SendSession:
    """Per-pass caches (the selected channel and the token per account) and the POSTing threads,
    each with one Graph client per account (a requests session is not shared between threads)."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = max(1, threads or int(getattr(settings, "AUTOMATION_SEND_THREADS", SEND_THREADS)))
        self.channels: dict[int, WhatsAppChannel | None] = {}
        self.tokens: dict[int, str] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._clients: list[GraphClient] = []
        self._lock = threading.Lock()

    def channel(self, account_id: int) -> WhatsAppChannel | None:
        if account_id not in self.channels:
            self.channels[account_id] = WhatsAppChannel.objects.filter(account_id=account_id, is_selected=True).first()
        return self.channels[account_id]

    def connected(self, account_id: int) -> bool:
        """The account's Meta token, read once per pass (an unreadable one counts as not connected)."""
        if account_id not in self.tokens:
            connection = MetaConnection.objects.filter(account_id=account_id).first()
            token = NO_TOKEN
            if connection is not None and connection.is_usable:
                try:
                    token = connection.get_token()
                except Exception:  # logged without the token
                    log.error("Meta token of account %s cannot be read", account_id)
            self.tokens[account_id] = token
        return bool(self.tokens[account_id])

    def post_all(self, outgoing: list[Outgoing], reservation: limiter.Reservation) -> list[tuple[Outgoing, Any, dt.datetime]]:
        """POST each send from the pool; (send, Meta's answer or the GraphError, when it came). A thread
        that gets its turn after the slots' second is over (less the guard: a busy host) does not
        POST; its send comes back with ``LATE``."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="automation-post")
        return list(self._pool.map(lambda out: self._post(out, reservation), outgoing))

    def _post(self, out: Outgoing, reservation: limiter.Reservation) -> tuple[Outgoing, Any, dt.datetime]:
        if not reservation.still_valid():
            return out, LATE, timezone.now()
        try:
            answer: Any = self._client(out.send.account_id).post(f"{out.phone_number_id}/messages", out.body)
        except GraphError as error:
            answer = error
        return out, answer, timezone.now()

    def _client(self, account_id: int) -> GraphClient:
        clients = self._local.__dict__.setdefault("clients", {})
        if account_id not in clients:
            clients[account_id] = GraphClient(self.tokens[account_id], max_retries=1)
            with self._lock:
                self._clients.append(clients[account_id])
        return clients[account_id]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()


@dataclass
class BatchResult:
    outcomes: Counter = field(default_factory=Counter)
    full_accounts: set[int] = field(default_factory=set)  # their number had no slot left this second
    second: int = 0


def send_batch(claim: Claim, session: SendSession, *, now: dt.datetime | None = None) -> BatchResult:
    """Handle every send of one claim; the outcomes count sent, skipped, retry, unknown, failed, lost."""
    now = now or timezone.now()
    result = BatchResult()
    try:
        reservation, to_load, waiting = _reserve(claim, session, result)
    except limiter.LimiterUnavailable as exc:
        _hold_back(claim.ids, claim, result, exc)
        return result
    result.second = reservation.second
    if waiting:  # no slot for them now: back to the queue for their turn, before any loading
        result.outcomes["retry"] += claiming.release_each(waiting, claim.at)
    batch = Batch(to_load, claim.at, now)
    unused: Counter = Counter()  # reserved slots this batch does not use, per number
    outgoing = _recheck(batch, claim, session, result, unused)
    outgoing = _take_pairs(outgoing, claim, result, unused)
    limiter.give_back(reservation.second, unused)
    _post(outgoing, claim, session, reservation, result, now)
    return result


def _reserve(claim: Claim, session: SendSession, result: BatchResult) -> tuple[limiter.Reservation, list[int], dict[int, dt.datetime]]:
    """One limiter round trip for the batch's numbers; the sends that get no slot now wait for their
    turn in the number's queue (or the next second, when it was too late in this one)."""
    by_account: dict[int, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for send_id in claim.ids:  # (retrying, new), each in due order
        by_account[claim.account_of[send_id]][send_id not in claim.retrying].append(send_id)
    asks = {}
    for account_id, (retrying, new) in by_account.items():
        channel = session.channel(account_id)
        if channel is not None and session.connected(account_id):
            asks[channel.meta_phone_number_id] = limiter.Ask(len(retrying), len(new), channel.throughput_mps)
    reservation = limiter.reserve(asks)
    to_load, waiting = [], {}
    for account_id, (retrying, new) in by_account.items():
        channel = session.channel(account_id)
        if channel is None or channel.meta_phone_number_id not in asks:
            to_load += retrying + new  # skipped or retried below, without a slot
            continue
        turns = reservation.turns.get(channel.meta_phone_number_id, limiter.Turns())
        to_load += retrying[:turns.retrying] + new[:turns.new]
        for ids, start in ((retrying[turns.retrying:], turns.retrying_from), (new[turns.new:], turns.new_from)):
            for position, send_id in enumerate(ids):
                waiting[send_id] = _next_second(reservation.second) if reservation.late else \
                    dt.datetime.fromtimestamp(start + position * turns.step, tz=dt.timezone.utc)
        if turns.retrying + turns.new < len(retrying) + len(new):
            result.full_accounts.add(account_id)
    return reservation, to_load, waiting


def _recheck(batch: Batch, claim: Claim, session: SendSession, result: BatchResult, unused: Counter) -> list[Outgoing]:
    """Each send's re-checks (in due order); the skipped ones end in one UPDATE per reason."""
    skipped: dict[str, list[int]] = defaultdict(list)
    quiet: dict[dt.datetime, list[int]] = defaultdict(list)
    outgoing: list[Outgoing] = []
    for send in batch.sends:
        channel = session.channel(send.account_id)
        holds_slot = channel is not None and session.connected(send.account_id)
        if send.status != Status.SENDING or send.claimed_at != claim.at:
            result.outcomes["lost"] += 1
        elif reason := batch.skip_reason(send):
            skipped[reason].append(send.pk)
        elif in_quiet_hours(batch.now, send.rule.quiet_hours_start, send.rule.quiet_hours_end, zone := account_zone(send.account)):
            quiet[out_of_quiet_hours(batch.now, send.rule.quiet_hours_start, send.rule.quiet_hours_end, zone)].append(send.pk)
        elif channel is None:
            skipped[Skip.NO_CHANNEL].append(send.pk)
        elif not holds_slot:
            result.outcomes[outcomes.retry_or_fail(send, claim.at, batch.now + NOT_CONNECTED_RETRY,
                                                   "Meta is not connected (or needs reconnecting)")] += 1
        else:
            outgoing.append(_outgoing(send, channel, batch))
            batch.count_going(send)
            continue
        if holds_slot:
            unused[channel.meta_phone_number_id] += 1
    for reason, ids in skipped.items():
        result.outcomes["skipped"] += MessageSend.objects.filter(pk__in=ids, status=Status.SENDING, claimed_at=claim.at).update(
            status=Status.SKIPPED, skip_reason=reason, updated_at=timezone.now())
    for retry_at, ids in quiet.items():
        result.outcomes["retry"] += claiming.release_many(ids, claim.at, retry_at=retry_at)
    return outgoing


def _outgoing(send: MessageSend, channel: WhatsAppChannel, batch: Batch) -> Outgoing:
    recipient = "".join(ch for ch in send.lead.phone if ch.isdigit())
    values = values_for(send.step.variables if send.step else {}, SendContext(send.account, send.lead, batch.latest_opportunity(send)))
    components = graph_components(send.template.components, send.template.parameter_format, values)
    body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": recipient, "type": "template",
            "template": {"name": send.template.name, "language": {"code": send.template.language}, "components": components},
            "biz_opaque_callback_data": str(send.pk)}
    return Outgoing(send, channel.pk, channel.meta_phone_number_id, channel.throughput_mps, recipient, components, body)


def _take_pairs(outgoing: list[Outgoing], claim: Claim, result: BatchResult, unused: Counter) -> list[Outgoing]:
    """One limiter round trip for the recipients; one still within its 6 s waits until it frees up."""
    try:
        free_at = limiter.take_pairs([(out.phone_number_id, out.recipient) for out in outgoing])
    except limiter.LimiterUnavailable as exc:
        _hold_back([out.send.pk for out in outgoing], claim, result, exc)
        return []
    ready, waiting = [], {}
    for out, until in zip(outgoing, free_at):
        if until:
            unused[out.phone_number_id] += 1
            waiting[out.send.pk] = dt.datetime.fromtimestamp(until + random.random() * 0.2, tz=dt.timezone.utc)
        else:
            ready.append(out)
    if waiting:
        result.outcomes["retry"] += claiming.release_each(waiting, claim.at)
    return ready


def _post(outgoing: list[Outgoing], claim: Claim, session: SendSession, reservation: limiter.Reservation,
          result: BatchResult, now: dt.datetime) -> None:
    """Pool-width chunks: one transaction records the previous chunk's accepted sends and turns this
    chunk ``unknown``, then the chunk's POSTs leave at once. When the slots' second is over (less the
    guard) before the batch is, the rest takes slots of the new second (they already had their
    turn), or waits for its next turn."""
    accepted: list[tuple[int, str, dt.datetime]] = []
    pending = outgoing
    while pending:
        if not reservation.still_valid():
            time.sleep(max(0.0, reservation.second + 1 - time.time()))  # the guard's few ms, to the next second
            try:
                reservation, pending = _renew(pending, claim, result)
            except limiter.LimiterUnavailable as exc:
                _hold_back([out.send.pk for out in pending], claim, result, exc)
                break
            continue
        chunk, pending = pending[:session.threads], pending[session.threads:]
        with transaction.atomic():
            outcomes.record_sent(accepted)
            mine = outcomes.mark_unknown(chunk, claim.at)
        result.outcomes["sent"] += len(accepted)
        result.outcomes["lost"] += len(chunk) - len(mine)
        accepted, late = [], []
        for out, answer, at in session.post_all(mine, reservation):
            if answer is LATE:
                late.append(out)
            elif isinstance(answer, GraphError):
                result.outcomes[outcomes.after_error(out.send, claim.at, answer, now)] += 1
            else:
                accepted.append((out.send.pk, outcomes.wamid_of(answer), at))
        pending = outcomes.unmark_unknown(late, claim.at) + pending  # their requests never left: next second's slots
    outcomes.record_sent(accepted)
    result.outcomes["sent"] += len(accepted)


def _renew(pending: list[Outgoing], claim: Claim, result: BatchResult) -> tuple[limiter.Reservation, list[Outgoing]]:
    """Slots of the current second for sends whose reservation ran out before their POST; the ones
    that get none give back their recipients' slots and wait for their turn."""
    by_phone: dict[str, list[Outgoing]] = defaultdict(list)
    for out in pending:
        by_phone[out.phone_number_id].append(out)
    reservation = limiter.reserve({phone: limiter.Ask(len(outs), 0, outs[0].throughput_mps) for phone, outs in by_phone.items()})
    going, waiting = [], {}
    for phone, outs in by_phone.items():
        turns = reservation.turns.get(phone, limiter.Turns())
        going += outs[:turns.retrying]
        for position, out in enumerate(outs[turns.retrying:]):
            waiting[out] = _next_second(reservation.second) if reservation.late else \
                dt.datetime.fromtimestamp(turns.retrying_from + position * turns.step, tz=dt.timezone.utc)
    if waiting:
        limiter.forget_pairs([(out.phone_number_id, out.recipient) for out in waiting])
        result.outcomes["retry"] += claiming.release_each({out.send.pk: at for out, at in waiting.items()}, claim.at)
    return reservation, going


def _hold_back(send_ids: list[int], claim: Claim, result: BatchResult, exc: Exception) -> None:
    """The limiter's Redis is down (a restart): these sends, whose requests never left, go back to
    the queue for a few seconds, without counting an attempt; nothing goes out uncounted."""
    log.warning("%d sends wait: %s", len(send_ids), exc)
    result.outcomes["retry"] += claiming.release_many(send_ids, claim.at, retry_at=timezone.now() + LIMITER_DOWN_RETRY)


def _next_second(second: int) -> dt.datetime:
    """Retry time for a send that found its number full: the next second, spread over its first 200 ms."""
    return dt.datetime.fromtimestamp(second + 1 + random.random() * 0.2, tz=dt.timezone.utc)
