"""Rate limits on every endpoint, keyed per user or per client IP: fixed windows as django-ratelimit counts
them, in one Redis round trip on the production cache (``_count_in_redis``), else through django-ratelimit."""
from __future__ import annotations

import functools
import logging
import time
import unicodedata
from typing import Callable

from django.conf import settings
from django.core.cache import caches
from django.http import JsonResponse
from django_ratelimit import ALL
from django_ratelimit.core import _get_window, _make_cache_key, _split_rate, get_usage
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


# INCR, and a new counter expires with its window: one round trip (EVALSHA) instead of django-ratelimit's
# add + incr through django-redis, two on every request under load.
_INCREMENT = "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n"


def _redis_client(cache):
    """The redis-py client behind a django-redis cache (its pool, timeouts and retries), else None."""
    return cache.client.get_client(write=True) if isinstance(cache, RedisCache) else None


def _count_in_redis(client, cache, group: str, value: str, rate: str) -> tuple[int, int, int]:
    """(count, limit, seconds left in the window) after counting this request. The rate, the window and the
    counter's key are django-ratelimit's own (pinned in requirements.txt): a setting means the same on every
    cache, and a counter goes on from where django-ratelimit left it."""
    limit, period = _split_rate(rate)
    window = _get_window(value, period)
    key = cache.make_key(_make_cache_key(group, window, rate, value, ALL))
    count = client.register_script(_INCREMENT)(keys=[key], args=[period + 1], client=client)
    return int(count), limit, window - int(time.time())


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
