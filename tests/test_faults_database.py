"""The database connection of a webhook task is lost while it works (``pg_terminate_backend``, as a
PostgreSQL restart, a failover or an idle-connection killer does).

The task runs in the test's own thread (django-q2 runs tasks inline in tests) and another connection
terminates its backend at a chosen moment: while the handler waits on Meta for a lead, or after the
lead is committed but before the outcome is recorded. Afterwards every lead of the delivery is present
exactly once (after the retry sweep, every 5 minutes) and the welcome message went out once.
PostgreSQL only: an SQLite database is a file opened in-process, with no server connection to lose.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter

import pytest
from django.db import connection, connections
from django.utils import timezone

from automation.models import MessageSend
from crm_marketing import events, webhook_processing
from crm_marketing.models import Lead, LeadTouch, WebhookEvent
from crm_marketing.sandbox import leadgen_payload
from tests.fixtures.automation import _no_second_guard, acme_whatsapp, make_rule  # noqa: F401
from tests.fixtures.webhooks import deliver_sandbox_webhooks, post_signed

pytestmark = pytest.mark.django_db(transaction=True)
SWEEP_EVERY = dt.timedelta(minutes=5)  # crm_marketing.retry_webhook_events and the events sweep's schedules


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend ends a PostgreSQL server connection; SQLite is a file opened in-process")


def terminate_when(condition) -> dict:
    """From another thread, once ``condition()`` holds (bounded wait), terminate every other connection to the
    test database: the task's (the test thread's; django-q2 reopens it before each task, so its pid is only
    known then). ``terminated``: how many were ended."""
    done: dict = {}

    def run():
        deadline = time.monotonic() + 30
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                done["terminated"] = cursor.fetchone()[0]
        finally:
            connections.close_all()

    done["thread"] = threading.Thread(target=run)
    done["thread"].start()
    return done


def requested(sandbox, path: str):
    return lambda: any(r.path == path for r in list(sandbox.requests))


def leadgen_delivery(sandbox, count: int) -> tuple[dict, list[str]]:
    """One signed delivery of ``count`` Lead Ads leads (one change each)."""
    lead_ids = [sandbox.add_lead(full_name=f"Lead {n}", phone=f"+5491188800{n:02d}") for n in range(count)]
    entries = [leadgen_payload(lead_id, "900001", "700001")["entry"][0] for lead_id in lead_ids]
    return {"object": "page", "entry": entries}, lead_ids


def sweep(now: dt.datetime) -> None:
    """The retry sweeps as their schedules run them at ``now``: webhook events, then domain events."""
    webhook_processing.process_events(webhook_processing.due_event_ids(now=now))
    events.deliver_due(now=now)


def leads_by_meta_id() -> Counter:
    return Counter(LeadTouch.objects.values_list("external_id", flat=True))


def test_a_connection_lost_while_the_task_fetches_a_lead_loses_no_lead_of_the_delivery(
        client, acme, acme_whatsapp, meta_sandbox):
    payload, lead_ids = leadgen_delivery(meta_sandbox, 3)
    meta_sandbox.slow_next(1, seconds=3)  # the task waits on Meta for the delivery's leads (one Graph batch request)
    killer = terminate_when(lambda: any(r.method == "POST" for r in list(meta_sandbox.requests)))

    response = post_signed(client, payload)  # stored, then processed inline by the task
    killer["thread"].join()
    connection.close()  # the test's next query opens a new connection, as django-q2 does between tasks
    before_sweep = leads_by_meta_id()
    sweep(timezone.now() + SWEEP_EVERY)

    assert response.status_code == 200 and killer["terminated"] >= 1  # the task's (another idle one of the test database may go too)
    # The new leads' batch found the connection gone; they were then recorded one by one on a new one.
    assert before_sweep == Counter(lead_ids)
    assert leads_by_meta_id() == Counter(lead_ids) and Lead.objects.count() == 3
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_a_connection_lost_after_the_lead_is_saved_but_before_its_outcome_keeps_one_lead_and_one_welcome(
        client, acme, acme_whatsapp, meta_sandbox, django_capture_on_commit_callbacks):
    make_rule(acme, acme_whatsapp, name="Welcome")
    payload, [lead_id] = leadgen_delivery(meta_sandbox, 1)
    meta_sandbox.slow_next(1, seconds=3, path_contains="/messages")  # the welcome goes out inline, then waits on Meta
    killer = terminate_when(requested(meta_sandbox, "/1300001/messages"))

    response = post_signed(client, payload)
    killer["thread"].join()
    connection.close()
    sweep(timezone.now() + SWEEP_EVERY)
    with django_capture_on_commit_callbacks(execute=True):
        deliver_sandbox_webhooks(client, meta_sandbox)

    accepted = Counter(m["biz_opaque_callback_data"] for m in meta_sandbox.sent_messages)
    assert response.status_code == 200 and killer["terminated"] >= 1  # the task's (another idle one of the test database may go too)
    assert leads_by_meta_id() == Counter([lead_id]) and Lead.objects.count() == 1
    assert list(MessageSend.objects.values_list("status", flat=True)) == ["read"]
    assert accepted == Counter({str(MessageSend.objects.get().pk): 1})
    assert set(WebhookEvent.objects.filter(field="leadgen").values_list("status", flat=True)) == {"processed"}
