"""Redis restarts under the production run mode: a web server and a qcluster (subprocesses) on the
test's PostgreSQL database, with the django-q2 broker, the cache and the send limiter on a Redis of
the test's own that is killed and started again empty.

The story: a lead arrives and gets its welcome through the broker; the workers are killed while a
second lead's task waits in Redis, which dies and comes back empty (the task is gone); while Redis is
down a third lead arrives and a manager asks for a sync and a template sync (nothing can be queued);
Redis and the workers come back and a fourth lead goes through at once. The web server never answers
a 500; the fourth lead's drain task takes the webhook events whose task the broker lost, and the retry
sweeps, as their schedules run them, bring in the rest: every lead is present once, every welcome went
out once (the sandbox's request log), and the sync completes.
PostgreSQL only: the web server and the qcluster are other processes and must open the test database.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token

from automation.engine.passes import run_pass
from automation.models import MessageSend
from crm_marketing import events, webhook_processing
from crm_marketing.models import LeadTouch
from crm_marketing.sandbox import leadgen_payload
from marketing.models import SyncRun
from marketing.services.runs import queue_due_syncs
from tests.fixtures.automation import make_channel, make_rule, make_template
from tests.fixtures.redis_server import free_port, own_redis  # noqa: F401
from tests.fixtures.webhooks import connect_meta

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    db = connection.settings_dict
    credentials = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_for(condition, what: str, bound_seconds: float = 120.0) -> None:
    """Poll until ``condition()`` holds: a bound against hanging, never a timing assertion."""
    deadline = time.monotonic() + bound_seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def production(own_redis, meta_sandbox, tmp_path, settings):  # noqa: F811
    """Start the web server and a qcluster with the production broker, cache and limiter on own_redis (and
    the send limiter of this process, which runs the sweeps, on it too)."""
    if connection.vendor != "postgresql":
        pytest.skip("the web server and the qcluster are other processes: they need the PostgreSQL test database")
    settings.Q_BROKER_URL = own_redis.url(0)
    port = free_port()
    env = dict(os.environ, DATABASE_URL=database_url(), Q_BROKER_URL=own_redis.url(0), CACHE_URL=own_redis.url(1),
               Q_SYNC="false", Q_WORKERS="2", DEBUG="true", META_GRAPH_URL=meta_sandbox.base_url,
               META_HTTP_TIMEOUT="5", META_INSIGHTS_POLL_SECONDS="0.01", AUTOMATION_SECOND_GUARD="0")
    processes = {}

    def start(name: str, *args: str) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        processes[name] = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        return processes[name]

    def stop(name: str) -> None:
        """SIGKILL to the process and its children (a host lost): whatever waits in Redis stays there."""
        process = processes.pop(name)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    start("web", "runserver", f"127.0.0.1:{port}", "--noreload")
    start("qcluster", "qcluster")
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(f"{base}/healthz"), "the web server")
    try:
        yield {"base": base, "redis": own_redis, "logs": tmp_path,
               "start_cluster": lambda: start("qcluster", "qcluster"), "stop_cluster": lambda: stop("qcluster")}
    finally:
        for name in list(processes):
            stop(name)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def acme_live(acme, alice, meta_sandbox):
    """acme connected to the sandbox, with the Welcome rule on its WhatsApp number; alice's API token."""
    from django_q.models import Schedule

    Schedule.objects.all().delete()  # the tests run the sweeps themselves, at the times their schedules would
    connect_meta(acme, meta_sandbox)
    make_channel(acme)
    make_rule(acme, make_template(acme), name="Welcome")
    return Token.objects.create(user=alice).key


def new_lead(sandbox, base: str, n: int) -> tuple[str, int]:
    lead_id = sandbox.add_lead(full_name=f"Lead {n}", phone=f"+5491190000{n:02d}")
    response = sandbox.fire_webhook(f"{base}/webhooks/meta", leadgen_payload(lead_id, "900001", "700001"))
    return lead_id, response.status_code


def welcomes(sandbox) -> Counter:
    return Counter(r.body.get("biz_opaque_callback_data") for r in list(sandbox.requests)
                   if r.method == "POST" and r.path.endswith("/messages") and r.status == 200)


def sent_count() -> int:
    """Welcomes recorded as sent (the worker stores Meta's answer just after the sandbox logs the POST)."""
    return MessageSend.objects.filter(status="sent").count()


def has_lead(lead_id: str) -> bool:
    return LeadTouch.objects.filter(external_id=lead_id).exists()


def test_a_redis_restart_loses_no_lead_no_welcome_and_no_sync_and_the_web_never_answers_500(
        acme_live, production, meta_sandbox):
    base, redis = production["base"], production["redis"]
    api = {"Authorization": f"Token {acme_live}"}
    answers = []

    first, status = new_lead(meta_sandbox, base, 1)
    answers.append(status)
    wait_for(lambda: sent_count() == 1, "the first welcome, through the broker")

    production["stop_cluster"]()  # the workers are gone (their host was lost) ...
    queued, status = new_lead(meta_sandbox, base, 2)  # ... while this lead's task waits in Redis
    answers.append(status)
    redis.kill()  # Redis dies: the queued task is gone
    during, status = new_lead(meta_sandbox, base, 3)
    answers.append(status)
    for method, path in (("post", "sync"), ("post", "hsm/templates/sync"), ("get", "stats")):  # a manager's clicks
        answers.append(requests.request(method, f"{base}/crm/marketing/{path}", headers=api, timeout=30).status_code)
    redis.start()
    production["start_cluster"]()
    after, status = new_lead(meta_sandbox, base, 4)
    answers.append(status)
    # The drain this delivery queues takes every received event: also those whose task Redis lost.
    wait_for(lambda: all(has_lead(lead) for lead in (queued, during, after)) and sent_count() == 4,
             "the leads after the restart, through the broker")

    lost = SyncRun.objects.get().status
    now = timezone.now()
    webhook_processing.process_events(webhook_processing.due_event_ids(now=now + dt.timedelta(minutes=10)))  # retry_webhook_events
    events.deliver_due(now=now + dt.timedelta(minutes=1))  # deliver_due_events
    run_pass(budget_seconds=20)  # a pass the every-minute dispatch queues
    queue_due_syncs(now=now + dt.timedelta(minutes=15))  # sync_due_ad_accounts, every 15 minutes
    wait_for(lambda: SyncRun.objects.filter(status="succeeded").exists(), "the sync")

    assert answers == [200, 200, 200, 202, 202, 200, 200], production["logs"]
    assert lost == "queued"  # what the broker lost, before the sweeps
    assert Counter(LeadTouch.objects.values_list("external_id", flat=True)) == Counter([first, queued, during, after])
    assert welcomes(meta_sandbox) == Counter(str(pk) for pk in MessageSend.objects.values_list("pk", flat=True))
    assert len(welcomes(meta_sandbox)) == 4 and set(MessageSend.objects.values_list("status", flat=True)) == {"sent"}
    assert list(SyncRun.objects.values_list("status", flat=True)) == ["succeeded"]
