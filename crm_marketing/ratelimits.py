"""Rate limits on every endpoint (django-ratelimit), keyed per user or per client IP."""
from __future__ import annotations

import functools
import logging
import unicodedata
from typing import Callable

from django.conf import settings
from django.http import JsonResponse
from django_ratelimit.core import get_usage
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


def enforce_rate_limit(request, *, group: str = "api", rate: str | None = None, key: Callable = _user_or_ip,
                       fail_closed: bool = False) -> None:
    """Count this request; raise RateLimited with the seconds left in the window when over.

    While the cache is unreachable (a Redis restart) the request is let through uncounted, with a log
    line: the API and the webhook intake keep answering. ``fail_closed`` (sign-in) refuses instead."""
    user = getattr(request, "user", None)
    if rate is None:
        rate = settings.API_RATE_LIMIT if user is not None and user.is_authenticated else settings.API_ANON_RATE_LIMIT
    try:
        usage = get_usage(request, group=group, key=key, rate=rate, increment=True)
    except CACHE_DOWN as exc:
        if fail_closed:
            raise LimitsUnavailable("Sign-in is paused for a moment; try again in a few seconds.") from exc
        log.warning("rate limit %s not counted: the cache is unreachable (%s)", group, type(exc).__name__)
        return
    if usage and usage["should_limit"]:
        raise RateLimited(max(1, int(usage["time_left"])))


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
