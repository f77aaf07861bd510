"""Where the limiter keeps its counts: Redis (Lua scripts, one round trip each, atomic) or the
database (``ThroughputSlot`` rows: ``mps:{phone}`` per second, ``queue:{phone}`` holding the number's
queue clock, ``pair:{phone}:{recipient}`` holding when a recipient frees up). limiter.py decides."""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

from django.conf import settings
from django.db import connection, transaction

PAIR_SECONDS = 6.0
SIX_DECIMALS = "%.6f"


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
def _client(url: str):
    import redis

    return redis.Redis.from_url(url)


def _eval(url: str, script: str, keys: list[str], *args):
    """One script run; a Redis error becomes ``LimiterUnavailable`` (the caller holds its sends back)."""
    import redis

    try:
        return _client(url).eval(script, len(keys), *keys, *args)
    except redis.RedisError as exc:
        raise LimiterUnavailable(f"the send limiter's Redis is unreachable ({type(exc).__name__})") from exc


# -- Redis ----------------------------------------------------------------------------------------------
def _rate_key(phone: str, second: int) -> str:
    return f"crm:automation:mps:{phone}:{second}"


def _pair_key(phone: str, recipient: str) -> str:
    return f"crm:automation:pair:{phone}:{recipient}"


# limiter.plan in Lua. KEYS: per number its second's counter and its queue clock; ARGV: per number
# retrying, new, limit; then now. Returns per number {retrying, new, new_from, retrying_from, clock}.
_RESERVE = """
local n = #KEYS / 2
local now = tonumber(ARGV[3 * n + 1])
local second = math.floor(now)
local out = {}
for i = 1, n do
  local retrying, new, limit = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  local step = 1 / limit
  local left = math.max(0, limit - tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0'))
  local clock = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  local r = math.min(retrying, left)
  local g = 0
  if clock < second + 1 then g = math.min(new, left - r) end
  if r + g > 0 then
    redis.call('INCRBY', KEYS[2 * i - 1], r + g)
    redis.call('EXPIRE', KEYS[2 * i - 1], 3)
  end
  local queue_from = math.max(clock, second + 1)
  local retrying_from = queue_from + (new - g) * step
  local waiting = new - g + retrying - r
  if waiting > 0 then
    clock = queue_from + waiting * step
    redis.call('SET', KEYS[2 * i], string.format('%.6f', clock), 'EX', 3600)
  end
  out[i] = {r, g, string.format('%.6f', queue_from), string.format('%.6f', retrying_from), string.format('%.6f', clock)}
end
return out
"""
# Per recipient: the key holds the epoch time it frees up; take it when that time has passed.
_PAIRS = """
local out = {}
for i, key in ipairs(KEYS) do
  local free_at = tonumber(redis.call('GET', key) or '0')
  if free_at > tonumber(ARGV[1]) then
    out[i] = tostring(free_at)
  else
    redis.call('SET', key, ARGV[2], 'PX', ARGV[3])
    out[i] = '0'
  end
end
return out
"""
_GIVE_BACK = """
for i, key in ipairs(KEYS) do
  local used = tonumber(redis.call('GET', key) or '0')
  if used > 0 then redis.call('DECRBY', key, math.min(used, tonumber(ARGV[i]))) end
end
return 0
"""


def redis_reserve(url: str, asks: dict, limits: dict[str, int], now: float) -> dict:
    from automation.engine.limiter import Turns

    phones = list(limits)
    keys = [key for phone in phones for key in (_rate_key(phone, int(now)), f"crm:automation:queue:{phone}")]
    args = [value for phone in phones for value in (asks[phone].retrying, asks[phone].new, limits[phone])]
    answer = _eval(url, _RESERVE, keys, *args, SIX_DECIMALS % now)
    return {phone: Turns(int(r), int(g), float(new_from), float(retrying_from), 1.0 / limits[phone], float(clock))
            for phone, (r, g, new_from, retrying_from, clock) in zip(phones, answer)}


def redis_pairs(url: str, pairs: list[tuple[str, str]], now: float) -> list[float]:
    keys = [_pair_key(phone, recipient) for phone, recipient in pairs]
    answer = _eval(url, _PAIRS, keys, SIX_DECIMALS % now, SIX_DECIMALS % (now + PAIR_SECONDS),
                   int((PAIR_SECONDS + 1) * 1000))
    return [float(value) for value in answer]


def redis_give_back(url: str, second: int, counts: dict[str, int]) -> None:
    _eval(url, _GIVE_BACK, [_rate_key(phone, second) for phone in counts], *counts.values())


def redis_forget_pairs(url: str, pairs: list[tuple[str, str]]) -> None:
    keys = sorted({_pair_key(phone, recipient) for phone, recipient in pairs})
    _eval(url, "return redis.call('DEL', unpack(KEYS))", keys)


# -- the database ---------------------------------------------------------------------------------------
def _table() -> str:
    from automation.engine.models import ThroughputSlot

    return connection.ops.quote_name(ThroughputSlot._meta.db_table)


def _in(values: list) -> str:
    return "(" + ", ".join(["%s"] * len(values)) + ")"


def db_reserve(asks: dict, limits: dict[str, int], now: float, plan: Callable) -> dict:
    """One short transaction: the numbers' queue rows are locked (in key order, so workers never
    deadlock), the second's counts read, ``plan`` run, the counts and clocks written."""
    table, second, phones = _table(), int(now), sorted(limits)
    queue_keys, rate_keys = [f"queue:{phone}" for phone in phones], [f"mps:{phone}" for phone in phones]
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""  # SQLite: the INSERT locks the file
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} (\"key\", bucket, hits, expires_epoch) VALUES "
                       + ", ".join(["(%s, 0, 0, 0)"] * len(phones)) + " ON CONFLICT (\"key\", bucket) DO NOTHING", queue_keys)
        cursor.execute(f"SELECT \"key\", expires_epoch FROM {table} WHERE bucket = 0 AND \"key\" IN {_in(queue_keys)} "
                       f"ORDER BY \"key\"{lock}", queue_keys)
        clocks = {key.split(":", 1)[1]: float(clock) for key, clock in cursor.fetchall()}
        cursor.execute(f"SELECT \"key\", hits FROM {table} WHERE bucket = %s AND \"key\" IN {_in(rate_keys)}", [second, *rate_keys])
        used = {key.split(":", 1)[1]: int(hits) for key, hits in cursor.fetchall()}
        turns = {phone: plan(asks[phone], limits[phone], used.get(phone, 0), clocks.get(phone, 0.0), now) for phone in phones}
        taking = [(phone, t.retrying + t.new) for phone, t in turns.items() if t.retrying + t.new]
        if taking:
            cursor.execute(f"INSERT INTO {table} (\"key\", bucket, hits, expires_epoch) VALUES "
                           + ", ".join(["(%s, %s, %s, %s)"] * len(taking))
                           + f" ON CONFLICT (\"key\", bucket) DO UPDATE SET hits = {table}.hits + excluded.hits",
                           [value for phone, n in taking for value in (f"mps:{phone}", second, n, now + 60)])
        moved = [(t.clock, f"queue:{phone}") for phone, t in turns.items() if t.clock != clocks.get(phone, 0.0)]
        if moved:
            cursor.executemany(f"UPDATE {table} SET expires_epoch = %s WHERE \"key\" = %s AND bucket = 0", moved)
    return turns


def db_pairs(pairs: list[tuple[str, str]], now: float) -> list[float]:
    table = _table()
    keys = [f"pair:{phone}:{recipient}" for phone, recipient in pairs]
    distinct = list(dict.fromkeys(keys))
    sql = (f"INSERT INTO {table} (\"key\", bucket, hits, expires_epoch) VALUES " + ", ".join(["(%s, 0, 1, %s)"] * len(distinct))
           + f" ON CONFLICT (\"key\", bucket) DO UPDATE SET hits = {table}.hits + 1, expires_epoch = excluded.expires_epoch "
           f"WHERE {table}.expires_epoch <= %s RETURNING \"key\"")
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for key in distinct for value in (key, now + PAIR_SECONDS)] + [now])
        taken = {row[0] for row in cursor.fetchall()}
        free_at = {}
        if len(taken) < len(distinct):
            denied = [key for key in distinct if key not in taken]
            cursor.execute(f"SELECT \"key\", expires_epoch FROM {table} WHERE bucket = 0 AND \"key\" IN {_in(denied)}", denied)
            free_at = {key: float(expires) for key, expires in cursor.fetchall()}
    answers, first = [], set()
    for key in keys:
        if key in taken and key not in first:
            first.add(key)
            answers.append(0.0)
        else:  # taken by someone else, or by an earlier send of this batch to the same recipient
            answers.append(free_at.get(key, now + PAIR_SECONDS))
    return answers


def db_give_back(second: int, counts: dict[str, int]) -> None:
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {_table()} SET hits = CASE WHEN hits > %s THEN hits - %s ELSE 0 END "
                           f"WHERE \"key\" = %s AND bucket = %s", [(n, n, f"mps:{phone}", second) for phone, n in counts.items()])


def db_forget_pairs(pairs: list[tuple[str, str]]) -> None:
    from automation.engine.models import ThroughputSlot

    ThroughputSlot.objects.filter(key__in={f"pair:{phone}:{recipient}" for phone, recipient in pairs}, bucket=0).delete()


def db_forget_old(now: float) -> int:
    from automation.engine.models import ThroughputSlot

    deleted, _ = ThroughputSlot.objects.filter(expires_epoch__lt=now - 60).delete()
    return deleted
