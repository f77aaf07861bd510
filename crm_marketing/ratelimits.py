"""Rate limits on every endpoint (django-ratelimit), keyed per user or per client IP."""
from __future__ import annotations

import functools
import unicodedata
from typing import Callable

from django.conf import settings
from django.http import JsonResponse
from django_ratelimit.core import get_usage

from crm_marketing.errors import DomainError


class RateLimited(DomainError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, retry_after: int):
        super().__init__(f"Too many requests; retry in {retry_after} s.")
        self.retry_after = retry_after


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


def enforce_rate_limit(request, *, group: str = "api", rate: str | None = None, key: Callable = _user_or_ip) -> None:
    """Count this request; raise RateLimited with the seconds left in the window when over."""
    user = getattr(request, "user", None)
    if rate is None:
        rate = settings.API_RATE_LIMIT if user is not None and user.is_authenticated else settings.API_ANON_RATE_LIMIT
    usage = get_usage(request, group=group, key=key, rate=rate, increment=True)
    if usage and usage["should_limit"]:
        raise RateLimited(max(1, int(usage["time_left"])))


def _too_many(exc: RateLimited) -> JsonResponse:
    response = JsonResponse({"success": False, "error": {"code": exc.code, "message": exc.message, "fields": {}}}, status=429)
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
                enforce_rate_limit(request, group="login-ip", rate=settings.API_ANON_RATE_LIMIT, key=lambda g, r: f"ip:{client_ip(r)}")
                enforce_rate_limit(request, group="login-username-ip", rate=settings.LOGIN_RATE_LIMIT, key=_login_username_and_ip)
                enforce_rate_limit(request, group="login-username", rate=settings.LOGIN_USERNAME_RATE_LIMIT, key=_login_username)
            except RateLimited as exc:
                return _too_many(exc)
        return view(request, *args, **kwargs)

    return limited
