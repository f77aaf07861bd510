"""The shared throughput limiter: a phone number's messages per second and one message per recipient
per 6 s, held across every worker and host.

Redis when ``Q_BROKER_URL`` or ``CACHE_URL`` is a Redis URL (``INCR`` + ``EXPIRE`` per
``{phone_number_id}:{epoch second}``, a compare-and-set script per recipient), the database otherwise (one
atomic ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` on ``ThroughputSlot``, on PostgreSQL and
SQLite alike). A denied send is not slept on: the caller re-queues it for ``retry_at``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.db import connection

PAIR_SECONDS = 6.0
# The sandbox and Meta count arrivals; a send admitted at the very end of a second may land in the
# next one, so a number is filled to this share of its rate.
DEFAULT_HEADROOM = 0.95


# A slot is good for the wall-clock second it was taken in; a request that could not leave before
# this much of the second is left over waits for the next one instead of landing there uncounted.
SECOND_GUARD = 0.1


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_at: float = 0.0  # epoch seconds when trying again makes sense
    reason: str = ""
    second: int = 0  # the wall-clock second the slot belongs to

    def still_valid(self, now: float | None = None) -> bool:
        """True while the request can still arrive within the slot's second."""
        guard = second_guard()
        if guard <= 0:
            return self.allowed
        now = time.time() if now is None else now
        return self.allowed and now < self.second + 1 - guard


def second_guard() -> float:
    return float(getattr(settings, "AUTOMATION_SECOND_GUARD", SECOND_GUARD))


def per_second_limit(throughput_mps: int) -> int:
    headroom = float(getattr(settings, "AUTOMATION_THROUGHPUT_HEADROOM", DEFAULT_HEADROOM))
    return max(1, math.floor(throughput_mps * headroom))


def redis_url() -> str:
    for url in (getattr(settings, "Q_BROKER_URL", ""), _cache_location()):
        if url and str(url).startswith(("redis://", "rediss://", "unix://")):
            return str(url)
    return ""


def _cache_location() -> str:
    cache = settings.CACHES.get("default", {})
    location = cache.get("LOCATION", "")
    return location[0] if isinstance(location, (list, tuple)) and location else str(location or "")


class LimiterUnavailable(Exception):
    """The shared limiter's Redis cannot be reached (down, restarting): nothing may go out uncounted."""


@lru_cache(maxsize=4)
def _redis(url: str):
    import redis

    return redis.Redis.from_url(url)


def acquire(phone_number_id: str, throughput_mps: int, recipient: str, *, now: float | None = None) -> Decision:
    """Take one slot of the number's current second and the recipient's 6-second slot, or say when to retry."""
    now = time.time() if now is None else now
    second = int(now)
    limit = per_second_limit(throughput_mps)
    url = redis_url()
    if url:
        allowed_rate = _on_redis(_redis_rate, url, phone_number_id, second, limit)
    else:
        allowed_rate = _db_rate(phone_number_id, second, limit, now)
    if not allowed_rate:
        return Decision(False, float(second + 1), "throughput")
    guard = second_guard()
    if guard > 0 and time.time() >= second + 1 - guard:  # too late to arrive within this second: the slot is wasted
        return Decision(False, float(second + 1), "late")
    if url:
        until = _on_redis(_redis_pair, url, phone_number_id, recipient, now)
    else:
        until = _db_pair(phone_number_id, recipient, now)
    if until:
        return Decision(False, until, "pair_rate")
    return Decision(True, second=second)


# -- Redis ----------------------------------------------------------------------------------------------
def _on_redis(call, *args):
    import redis

    try:
        return call(*args)
    except redis.RedisError as exc:
        raise LimiterUnavailable(f"the send limiter's Redis is unreachable ({type(exc).__name__})") from exc


def _redis_rate(url: str, phone_number_id: str, second: int, limit: int) -> bool:
    key = f"crm:automation:mps:{phone_number_id}:{second}"
    pipe = _redis(url).pipeline()
    pipe.incr(key)
    pipe.expire(key, 3)
    count, _ = pipe.execute()
    return int(count) <= limit


# Atomic: the key holds the epoch time the recipient frees up; take it when that time has passed.
_PAIR_SCRIPT = """
local free_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if free_at > tonumber(ARGV[1]) then return tostring(free_at) end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return '0'
"""


def _redis_pair(url: str, phone_number_id: str, recipient: str, now: float) -> float:
    """0 when the recipient's slot was taken now, else the epoch time it frees up."""
    key = f"crm:automation:pair:{phone_number_id}:{recipient}"
    answer = _redis(url).eval(_PAIR_SCRIPT, 1, key, f"{now:.6f}", f"{now + PAIR_SECONDS:.6f}",
                              int((PAIR_SECONDS + 1) * 1000))
    return float(answer)


# -- the database ---------------------------------------------------------------------------------------
def _table() -> str:
    from automation.engine.models import ThroughputSlot

    return connection.ops.quote_name(ThroughputSlot._meta.db_table)


def _db_rate(phone_number_id: str, second: int, limit: int, now: float) -> bool:
    table = _table()
    sql = (f"INSERT INTO {table} (\"key\", bucket, hits, expires_epoch) VALUES (%s, %s, 1, %s) "
           f"ON CONFLICT (\"key\", bucket) DO UPDATE SET hits = {table}.hits + 1 "
           f"WHERE {table}.hits < %s RETURNING hits")
    with connection.cursor() as cursor:
        cursor.execute(sql, [f"mps:{phone_number_id}", second, now + 60, limit])
        return cursor.fetchone() is not None


def _db_pair(phone_number_id: str, recipient: str, now: float) -> float:
    table = _table()
    key = f"pair:{phone_number_id}:{recipient}"
    sql = (f"INSERT INTO {table} (\"key\", bucket, hits, expires_epoch) VALUES (%s, 0, 1, %s) "
           f"ON CONFLICT (\"key\", bucket) DO UPDATE SET hits = {table}.hits + 1, expires_epoch = excluded.expires_epoch "
           f"WHERE {table}.expires_epoch <= %s RETURNING hits")
    with connection.cursor() as cursor:
        cursor.execute(sql, [key, now + PAIR_SECONDS, now])
        if cursor.fetchone() is not None:
            return 0.0
        cursor.execute(f"SELECT expires_epoch FROM {table} WHERE \"key\" = %s AND bucket = 0", [key])
        row = cursor.fetchone()
    return float(row[0]) if row else now + PAIR_SECONDS


def forget_pair(phone_number_id: str, recipient: str) -> None:
    """Give back a recipient's slot that was taken but not used (the request never left)."""
    url = redis_url()
    if url:
        _redis(url).delete(f"crm:automation:pair:{phone_number_id}:{recipient}")
        return
    from automation.engine.models import ThroughputSlot

    ThroughputSlot.objects.filter(key=f"pair:{phone_number_id}:{recipient}", bucket=0).delete()


def forget_old_slots(*, now: float | None = None) -> int:
    """Drop database slots that can no longer decide anything (the send pass calls this)."""
    if redis_url():
        return 0
    from automation.engine.models import ThroughputSlot

    now = time.time() if now is None else now
    deleted, _ = ThroughputSlot.objects.filter(expires_epoch__lt=now - 60).delete()
    return deleted
