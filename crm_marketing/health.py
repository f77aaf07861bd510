"""/healthz (the process answers) and /readyz (what it needs answers, and how far behind the work is).

/readyz runs the core's checks (database, cache, task broker, webhook backlog) and every check an
app registered from its AppConfig.ready() with ``register_check(name, fn)``: the core never
imports an app. A check returns a dict of figures (``{"oldest_due_age_seconds": 12}``) or raises
``NotReady(reason)``; any other exception counts as a failure too and is reported by its class
name only, so no connection string, host or secret reaches the answer. Figures inform (a load
balancer keeps a lagging host), failures make the answer a 503.

No authentication (probes have none), rate-limited per client address, never cached.
"""
from __future__ import annotations

import functools
import logging
import uuid
from datetime import datetime
from typing import Any, Callable

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Min, Q
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from crm_marketing.event_models import OutboxEvent
from crm_marketing.ratelimits import RateLimited, client_ip, enforce_rate_limit
from crm_marketing.webhook_models import WebhookEvent

log = logging.getLogger(__name__)

Check = Callable[[], dict[str, Any]]
_checks: dict[str, Check] = {}
CHECK_TIMEOUT_SECONDS = 2.0


class NotReady(Exception):
    """A dependency answers but cannot do its job; the message is shown in /readyz."""


def register_check(name: str, check: Check) -> None:
    """Add a readiness check (called from an AppConfig.ready(); the same name replaces it)."""
    _checks[name] = check


def unregister_check(name: str) -> None:
    _checks.pop(name, None)


def age_seconds(moment: datetime | None, *, now: datetime | None = None) -> int | None:
    """Whole seconds since ``moment`` (None when there is nothing waiting)."""
    if moment is None:
        return None
    return max(0, int(((now or timezone.now()) - moment).total_seconds()))


# --- the core's checks -----------------------------------------------------------------------
def check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


def check_cache() -> dict[str, Any]:
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "ok", 10)
    if cache.get(key) != "ok":
        raise NotReady("the cache does not keep what it is given")
    cache.delete(key)
    return {}


@functools.lru_cache(maxsize=4)
def _redis_client(url: str) -> redis.Redis:
    # A pool per URL for the life of the process, with short timeouts so a dead Redis fails the probe fast.
    return redis.Redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS, socket_timeout=CHECK_TIMEOUT_SECONDS)


def queue_depth() -> tuple[str, int]:
    """(broker kind, tasks waiting): the Redis list length, or the ORM queue rows that are due."""
    from django_q.conf import Conf  # django-q2 reads settings on import

    if settings.Q_BROKER_URL:
        client = _redis_client(settings.Q_BROKER_URL)
        client.ping()
        return "redis", int(client.llen(f"django_q:{Conf.CLUSTER_NAME}:q"))
    from django_q.models import OrmQ

    return "orm", OrmQ.objects.filter(key=Conf.CLUSTER_NAME, lock__lte=timezone.now()).count()


def check_broker() -> dict[str, Any]:
    kind, depth = queue_depth()
    return {"kind": kind, "queue_depth": depth}


def webhook_backlog() -> dict[str, Any]:
    """Meta webhook changes not yet handled: waiting, running, or failed with a retry to come."""
    undelivered = Q(status__in=[WebhookEvent.Status.RECEIVED, WebhookEvent.Status.PROCESSING]) | Q(
        status=WebhookEvent.Status.FAILED, next_attempt_at__isnull=False)
    figures = WebhookEvent.objects.filter(undelivered).aggregate(pending=Count("id"), oldest=Min("received_at"))
    return {"pending": figures["pending"], "oldest_pending_age_seconds": age_seconds(figures["oldest"])}


def domain_event_backlog() -> dict[str, Any]:
    """Domain events some subscriber has not taken yet (the outbox's partial index): a count or an
    age that keeps growing means the delivery task and the sweep are not running."""
    figures = OutboxEvent.objects.filter(delivered_at__isnull=True).aggregate(undelivered=Count("id"), oldest=Min("created_at"))
    return {"undelivered": figures["undelivered"], "oldest_undelivered_age_seconds": age_seconds(figures["oldest"])}


CORE_CHECKS: dict[str, Check] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
    "webhook_events": webhook_backlog,
    "domain_events": domain_event_backlog,
}


def run_checks() -> tuple[bool, dict[str, dict[str, Any]]]:
    """Every check, each on its own: one failing does not hide the others."""
    results: dict[str, dict[str, Any]] = {}
    for name, check in {**CORE_CHECKS, **_checks}.items():
        try:
            results[name] = {"ok": True, **(check() or {})}
        except NotReady as exc:
            results[name] = {"ok": False, "error": str(exc)}
        except Exception as exc:  # unreachable services: the class name says enough, the message may hold a DSN
            log.warning("readiness check %s failed: %s", name, type(exc).__name__)
            results[name] = {"ok": False, "error": f"{type(exc).__name__} (unreachable or failing)"}
    if not results["database"]["ok"]:
        connection.close_if_unusable_or_obsolete()
    return all(r["ok"] for r in results.values()), results


# --- views -----------------------------------------------------------------------------------
def _over_rate_limit(request: HttpRequest) -> JsonResponse | None:
    try:
        enforce_rate_limit(request, group="health", rate=settings.HEALTH_RATE_LIMIT, key=lambda group, r: f"ip:{client_ip(r)}")
    except RateLimited as exc:
        response = JsonResponse({"status": "rate_limited"}, status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    except Exception:  # the cache holds the counters: when it is down, answer anyway (readyz says why)
        log.warning("health rate limit skipped: the cache is unreachable")
    return None


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving: touches neither the database nor the broker."""
    return _over_rate_limit(request) or JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database, cache and broker answer; 503 naming the failing checks when not."""
    if limited := _over_rate_limit(request):
        return limited
    ready, results = run_checks()
    body: dict[str, Any] = {"status": "ok" if ready else "unavailable"}
    if not ready:
        body["failing"] = [name for name, result in results.items() if not result["ok"]]
    body["checks"] = results
    return JsonResponse(body, status=200 if ready else 503)
