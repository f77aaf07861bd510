"""Rate limits on every endpoint (django-ratelimit), keyed per user or per client IP."""
from __future__ import annotations

from django.conf import settings
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


def enforce_rate_limit(request, *, group: str = "api", rate: str | None = None) -> None:
    """Count this request; raise RateLimited with the seconds left in the window when over."""
    user = getattr(request, "user", None)
    if rate is None:
        rate = settings.API_RATE_LIMIT if user is not None and user.is_authenticated else settings.API_ANON_RATE_LIMIT
    usage = get_usage(request, group=group, key=_user_or_ip, rate=rate, increment=True)
    if usage and usage["should_limit"]:
        raise RateLimited(max(1, int(usage["time_left"])))
