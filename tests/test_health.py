"""/healthz says the process is up; /readyz says whether its database, cache and broker answer and
how far behind the work is, 503 naming what fails, without a secret."""
from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.test import Client, override_settings
from django.utils import timezone
from django_q.models import OrmQ

from automation.models import MessageSend
from crm_marketing import health
from crm_marketing.event_models import OutboxEvent
from crm_marketing.webhook_models import WebhookEvent
from marketing.models import AdAccount, SyncRun
from tests.factories import make_lead
from tests.test_run_demo import free_port

HEALTH_REDIS_DB = 12  # a Redis database no other test uses


def closed_port_redis(port: int, *, password: str = "") -> str:
    auth = f":{password}@" if password else ""
    return f"redis://{auth}127.0.0.1:{port}/0"


def unreachable_redis_cache(port: int) -> dict:
    return {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": closed_port_redis(port),
                        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1}}}


@pytest.fixture
def registered_check():
    """Registers checks the way an app does from its AppConfig.ready(), and removes them after."""
    names = []

    def register(name, check):
        names.append(name)
        health.register_check(name, check)

    yield register
    for name in names:
        health.unregister_check(name)


def test_healthz_answers_ok_without_touching_the_database(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"].startswith("max-age=0")
    assert len(response["X-Request-ID"]) == 32


def core_and_marketing(checks: dict) -> dict:
    """The checks this suite knows; other apps may register more."""
    return {name: checks[name] for name in ("database", "cache", "broker", "webhook_events", "domain_events",
                                            "marketing_syncs", "roi_rollup", "automation_sends")}


def test_readyz_answers_ok_with_every_check_and_its_figures(db):
    response = Client().get("/readyz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok" and "failing" not in response.json()
    assert core_and_marketing(response.json()["checks"]) == {
        "database": {"ok": True},
        "cache": {"ok": True},
        "broker": {"ok": True, "kind": "orm", "queue_depth": 0},
        "webhook_events": {"ok": True, "pending": 0, "oldest_pending_age_seconds": None},
        "domain_events": {"ok": True, "undelivered": 0, "oldest_undelivered_age_seconds": None},
        "marketing_syncs": {"ok": True, "active": 0, "oldest_active_age_seconds": None, "stale_running": 0},
        "roi_rollup": {"ok": True, "marks": 0, "oldest_mark_age_seconds": None},
        "automation_sends": {"ok": True, "due": 0, "oldest_due_age_seconds": None},
    }
    assert all(check["ok"] for check in response.json()["checks"].values())


def test_readyz_counts_waiting_tasks_and_the_oldest_undelivered_webhook_change(db):
    now = timezone.now()
    OrmQ.objects.create(key="crm_marketing", payload="task-1", lock=now - timedelta(seconds=5))
    OrmQ.objects.create(key="crm_marketing", payload="task-2", lock=now - timedelta(seconds=1))
    OrmQ.objects.create(key="crm_marketing", payload="taken-by-a-worker", lock=now + timedelta(minutes=5))
    for n, (status, received_hours_ago, next_attempt) in enumerate([
        (WebhookEvent.Status.RECEIVED, 1, None),
        (WebhookEvent.Status.FAILED, 3, now + timedelta(minutes=5)),  # will be retried: still undelivered
        (WebhookEvent.Status.FAILED, 9, None),  # out of retries: a failure, not a backlog
        (WebhookEvent.Status.PROCESSED, 20, None),
    ]):
        WebhookEvent.objects.create(object="page", field="leadgen", dedupe_key=f"change-{n}", payload={}, status=status,
                                    received_at=now - timedelta(hours=received_hours_ago), next_attempt_at=next_attempt)

    checks = Client().get("/readyz").json()["checks"]

    assert checks["broker"] == {"ok": True, "kind": "orm", "queue_depth": 2}
    assert checks["webhook_events"]["pending"] == 2
    assert 3 * 3600 <= checks["webhook_events"]["oldest_pending_age_seconds"] < 4 * 3600


def test_readyz_shows_the_oldest_undelivered_domain_event_and_the_oldest_due_send(acme):
    now = timezone.now()
    waiting = OutboxEvent.objects.create(name="lead_created", account=acme, payload={}, next_attempt_at=now)
    OutboxEvent.objects.filter(pk=waiting.pk).update(created_at=now - timedelta(minutes=7))
    OutboxEvent.objects.create(name="lead_created", account=acme, payload={}, delivered_at=now,
                               created_at=now - timedelta(hours=5))  # delivered: not a backlog
    lead = make_lead(acme)
    for n, (status, due_ago, next_attempt) in enumerate([
        (MessageSend.Status.QUEUED, timedelta(minutes=3), None),  # due 3 minutes ago, nobody took it
        (MessageSend.Status.QUEUED, timedelta(minutes=30), now + timedelta(seconds=30)),  # throttled: retried later
        (MessageSend.Status.QUEUED, -timedelta(hours=1), None),  # not due yet
        (MessageSend.Status.SENT, timedelta(hours=2), None),
    ]):
        MessageSend.objects.create(account=acme, lead=lead, trigger_type="lead_created", trigger_key=f"event:{n}",
                                   status=status, due_at=now - due_ago, next_attempt_at=next_attempt)

    checks = Client().get("/readyz").json()["checks"]

    assert checks["domain_events"]["undelivered"] == 1
    assert 7 * 60 <= checks["domain_events"]["oldest_undelivered_age_seconds"] < 8 * 60
    assert checks["automation_sends"]["due"] == 1
    assert 3 * 60 <= checks["automation_sends"]["oldest_due_age_seconds"] < 4 * 60


def test_readyz_is_503_naming_the_cache_when_the_cache_is_unreachable_and_healthz_stays_up(db):
    with override_settings(CACHES=unreachable_redis_cache(free_port())):
        ready = Client().get("/readyz")
        alive = Client().get("/healthz")

    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert ready.json()["failing"] == ["cache"]
    assert core_and_marketing(ready.json()["checks"]) == {
        "database": {"ok": True},
        "cache": {"ok": False, "error": "ConnectionError (unreachable or failing)"},
        "broker": {"ok": True, "kind": "orm", "queue_depth": 0},
        "webhook_events": {"ok": True, "pending": 0, "oldest_pending_age_seconds": None},
        "domain_events": {"ok": True, "undelivered": 0, "oldest_undelivered_age_seconds": None},
        "marketing_syncs": {"ok": True, "active": 0, "oldest_active_age_seconds": None, "stale_running": 0},
        "roi_rollup": {"ok": True, "marks": 0, "oldest_mark_age_seconds": None},
        "automation_sends": {"ok": True, "due": 0, "oldest_due_age_seconds": None},
    }
    assert alive.status_code == 200 and alive.json() == {"status": "ok"}


def test_readyz_names_an_unreachable_redis_broker_without_showing_its_address_or_password(db):
    port = free_port()
    with override_settings(Q_BROKER_URL=closed_port_redis(port, password="hunter2-broker-secret")):
        ready = Client().get("/readyz")

    assert ready.status_code == 503
    assert ready.json()["failing"] == ["broker"]
    assert ready.json()["checks"]["broker"] == {"ok": False, "error": "ConnectionError (unreachable or failing)"}
    assert b"hunter2" not in ready.content and str(port).encode() not in ready.content


def test_readyz_reads_the_queue_depth_from_the_redis_broker_list(db):
    url = f"redis://127.0.0.1:6379/{HEALTH_REDIS_DB}"
    queue = redis.Redis.from_url(url)
    queue.delete("django_q:crm_marketing:q")
    queue.rpush("django_q:crm_marketing:q", "task-1", "task-2", "task-3")
    try:
        with override_settings(Q_BROKER_URL=url):
            ready = Client().get("/readyz")
    finally:
        queue.delete("django_q:crm_marketing:q")

    assert ready.status_code == 200
    assert ready.json()["checks"]["broker"] == {"ok": True, "kind": "redis", "queue_depth": 3}


def test_readyz_shows_marketing_syncs_waiting_or_running_and_the_ones_whose_worker_died(acme, globex):
    now = timezone.now()
    for account, meta_id, status, heartbeat_ago in ((acme, "act_1", SyncRun.Status.RUNNING, timedelta(minutes=10)),
                                                    (globex, "act_2", SyncRun.Status.QUEUED, None)):
        ad_account = AdAccount.objects.create(account=account, meta_ad_account_id=meta_id, name=meta_id, currency="USD")
        run = SyncRun.objects.create(account=account, ad_account=ad_account, kind=SyncRun.Kind.FULL, status=status,
                                     started_at=now - timedelta(minutes=40) if heartbeat_ago else None,
                                     heartbeat_at=now - heartbeat_ago if heartbeat_ago else None)
        SyncRun.objects.filter(pk=run.pk).update(created_at=now - timedelta(minutes=40 if heartbeat_ago else 5))

    syncs = Client().get("/readyz").json()["checks"]["marketing_syncs"]

    # acme's run went silent 10 minutes ago (its worker died); globex's waits for a worker.
    assert {key: syncs[key] for key in ("ok", "active", "stale_running")} == {"ok": True, "active": 2, "stale_running": 1}
    assert 40 * 60 <= syncs["oldest_active_age_seconds"] < 50 * 60


def test_checks_registered_by_apps_report_their_figures_and_a_failing_one_makes_readyz_503(db, registered_check):
    registered_check("automation_sends", lambda: {"due": 4, "oldest_due_age_seconds": 75})
    ok = Client().get("/readyz")

    def outbox_is_stuck():
        raise health.NotReady("the domain event outbox table is missing")

    registered_check("domain_events", outbox_is_stuck)
    failing = Client().get("/readyz")

    assert ok.status_code == 200
    assert ok.json()["checks"]["automation_sends"] == {"ok": True, "due": 4, "oldest_due_age_seconds": 75}
    assert failing.status_code == 503
    assert failing.json()["failing"] == ["domain_events"]
    assert failing.json()["checks"]["domain_events"] == {"ok": False, "error": "the domain event outbox table is missing"}
    assert failing.json()["checks"]["automation_sends"]["ok"] is True


def test_health_endpoints_are_rate_limited_per_address_with_retry_after(db):
    client = Client()
    with override_settings(HEALTH_RATE_LIMIT="3/m"):
        answers = [client.get(path).status_code for path in ("/healthz", "/readyz", "/healthz", "/readyz")]
        limited = client.get("/healthz")

    assert answers == [200, 200, 200, 429]
    assert limited.status_code == 429
    assert limited.json() == {"status": "rate_limited"}
    assert int(limited["Retry-After"]) >= 1


def test_health_endpoints_take_no_writes():
    response = Client().post("/healthz")

    assert response.status_code == 405


def test_age_seconds_counts_whole_seconds_and_none_means_nothing_waits():
    now = timezone.now()

    assert health.age_seconds(now - timedelta(minutes=2, milliseconds=900), now=now) == 120
    assert health.age_seconds(None, now=now) is None
    assert health.age_seconds(now + timedelta(seconds=5), now=now) == 0
