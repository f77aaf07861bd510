"""Rate limits on every endpoint, keyed per user or per client IP: fixed windows as django-ratelimit counts
them, in one Redis round trip on the production cache (``_count_in_redis``), else through django-ratelimit."""
from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
import unicodedata
import zlib
from typing import Callable

from django.conf import settings
from django.core.cache import caches
from django.http import JsonResponse
from django_ratelimit.core import get_usage
from django_redis.cache import RedisCache
from django_redis.exceptions import ConnectionInterrupted
from redis import RedisError

from crm_marketing.errors import DomainError

log = logging.getLogger(__name__)
# The counters' cache is unreachable (Redis down or restarting): django-redis, redis-py, the socket.
CACHE_DOWN = (ConnectionInterrupted, RedisError, OSError)


class RateLimited(DomainError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, retry_after: int):
        super().__init__(f"Too many requests; retry in {retry_after} s.")
        self.retry_after = retry_after


class LimitsUnavailable(DomainError):
    """The counters cannot be read, on a limit that must not be skipped (sign-in): try again shortly."""

    status_code = 503
    code = "rate_limits_unavailable"
    retry_after = 5


def client_ip(request) -> str | None:
    """REMOTE_ADDR, or the address TRUSTED_PROXY_COUNT hops from the right of X-Forwarded-For."""
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    return request.META.get("REMOTE_ADDR") or None


def _user_or_ip(group, request) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{client_ip(request)}"


def login_username(raw) -> str:
    """The username as Django's sign-in resolves it, so that spellings of one name share one bucket.

    ``AuthenticationForm``'s UsernameField strips surrounding whitespace (``str.strip``, which takes
    the no-break space too), then NFKC-normalises (full-width ``ｍａｒｉａ`` is ``maria``) unless the
    stripped value is over the field's 150 characters; ``ModelBackend`` then looks the result up
    exactly. We also case-fold: that only merges buckets (``Maria`` and ``maria`` count together),
    so no spelling ever earns an attacker a fresh one."""
    value = str(raw or "").strip()
    if len(value) <= 150:
        value = unicodedata.normalize("NFKC", value)
    return value.casefold()


def _login_username(group, request) -> str:
    return "username:" + login_username(request.POST.get("username"))


def _login_username_and_ip(group, request) -> str:
    return f"username:{login_username(request.POST.get('username'))}|ip:{client_ip(request)}"


_RATE = re.compile(r"(\d+)/(\d*)([smhd])?")  # django-ratelimit's own: "600/min" is 600/m, "100/" is per second
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# INCR, and a new counter expires with its window: one round trip (EVALSHA) instead of django-ratelimit's
# add + incr through django-redis, two on every request under load.
_INCREMENT = "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n"


def parse_rate(rate: str) -> tuple[int, int]:
    """"600/m", "60/10m" -> (count, seconds), read exactly as django-ratelimit reads them (the same
    settings serve both paths)."""
    match = _RATE.match(rate)
    if not match:
        raise ValueError(f"not a rate: {rate!r} (count/period, e.g. 600/m or 60/10m)")
    count, multiple, unit = match.groups()
    return int(count), _UNIT_SECONDS[unit or "s"] * int(multiple or 1)


def _window_end(value: str, period: int, now: int) -> int:
    """The end of the fixed window ``now`` falls in, offset per key so that all windows do not end together."""
    if period == 1:
        return now
    end = now - now % period + zlib.crc32(value.encode()) % period
    return end + period if end < now else end


def _redis_client(cache):
    """The redis-py client behind a django-redis cache (its pool, timeouts and retries), else None."""
    return cache.client.get_client(write=True) if isinstance(cache, RedisCache) else None


def _count_in_redis(client, cache, group: str, value: str, rate: str) -> tuple[int, int, int]:
    """(count, limit, seconds left in the window) after counting this request."""
    limit, period = parse_rate(rate)
    now = int(time.time())
    end = _window_end(value, period, now)
    digest = hashlib.sha256(f"{group}|{limit}/{period}s|{value}|{end}".encode()).hexdigest()
    count = client.register_script(_INCREMENT)(keys=[cache.make_key(f"rl:{digest}")], args=[period + 1], client=client)
    return int(count), limit, end - now


def _usage(request, group: str, key: Callable, rate: str) -> tuple[bool, int]:
    """(over the limit, seconds left in the window), this request counted."""
    cache = caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]
    client = _redis_client(cache)
    if client is None:
        usage = get_usage(request, group=group, key=key, rate=rate, increment=True)
        return bool(usage and usage["should_limit"]), int(usage["time_left"]) if usage else 0
    count, limit, left = _count_in_redis(client, cache, group, key(group, request), rate)
    return count > limit, left


def enforce_rate_limit(request, *, group: str = "api", rate: str | None = None, key: Callable = _user_or_ip,
                       fail_closed: bool = False) -> None:
    """Count this request; raise RateLimited with the seconds left in the window when over.

    While the cache is unreachable (a Redis restart) the request is let through uncounted, with a log
    line: the API and the webhook intake keep answering. ``fail_closed`` (sign-in) refuses instead."""
    user = getattr(request, "user", None)
    if rate is None:
        rate = settings.API_RATE_LIMIT if user is not None and user.is_authenticated else settings.API_ANON_RATE_LIMIT
    if not getattr(settings, "RATELIMIT_ENABLE", True):
        return
    try:
        limited, seconds_left = _usage(request, group, key, rate)
    except CACHE_DOWN as exc:
        if fail_closed:
            raise LimitsUnavailable("Sign-in is paused for a moment; try again in a few seconds.") from exc
        log.warning("rate limit %s not counted: the cache is unreachable (%s)", group, type(exc).__name__)
        return
    if limited:
        raise RateLimited(max(1, seconds_left))


def _too_many(exc: RateLimited | LimitsUnavailable) -> JsonResponse:
    response = JsonResponse({"success": False, "error": {"code": exc.code, "message": exc.message, "fields": {}}},
                            status=exc.status_code)
    response["Retry-After"] = str(exc.retry_after)
    return response


def rate_limited(view, *, group: str = "api"):
    """A plain Django view (not on the API bases) limited like the API: per user, else per IP."""

    @functools.wraps(view)
    def limited(request, *args, **kwargs):
        try:
            enforce_rate_limit(request, group=group)
        except RateLimited as exc:
            return _too_many(exc)
        return view(request, *args, **kwargs)

    return limited


def login_rate_limited(view):
    """Sign-in attempts, counted three ways on the normalised username (``login_username``):

    - per client IP, any username (API_ANON_RATE_LIMIT): one address cannot spray many names;
    - per username from one IP (LOGIN_RATE_LIMIT, 10/m): the tight limit on guessing one password;
    - per username from all addresses (LOGIN_USERNAME_RATE_LIMIT, 60 per 10 minutes): the looser cap
      on guessing from many addresses.

    This is the "per-address component" answer to lockout: an attacker who hammers ``maria`` from his
    address is stopped by the username+IP bucket, while maria signing in from her own address is not
    (her bucket is hers). Only an attacker spread over several addresses who exceeds the looser cap
    can keep her out, and then for at most its 10-minute window."""

    @functools.wraps(view)
    def limited(request, *args, **kwargs):
        if request.method == "POST":
            try:
                enforce_rate_limit(request, group="login-ip", rate=settings.API_ANON_RATE_LIMIT, key=lambda g, r: f"ip:{client_ip(r)}",
                                   fail_closed=True)
                enforce_rate_limit(request, group="login-username-ip", rate=settings.LOGIN_RATE_LIMIT, key=_login_username_and_ip,
                                   fail_closed=True)
                enforce_rate_limit(request, group="login-username", rate=settings.LOGIN_USERNAME_RATE_LIMIT, key=_login_username,
                                   fail_closed=True)
            except (RateLimited, LimitsUnavailable) as exc:
                return _too_many(exc)
        return view(request, *args, **kwargs)

    return limited
