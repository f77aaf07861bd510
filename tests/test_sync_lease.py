"""A sync's lease: a killed worker's run stops blocking syncs about a minute after its last heartbeat.

The running worker renews `SyncRun.heartbeat_at` as it progresses; once that is older than
META_SYNC_LEASE_SECONDS, POST /crm/marketing/sync closes the run and starts a new one, and the
re-delivered django-q2 task takes the same run over. Tests shorten the lease to 2 s.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from marketing.models import SyncRun
from marketing.services.runs import LeaseLost, beat, take_over_stale_run
from marketing.tasks import run_sync
from tests.factories import metas_figures, stored_figures
from tests.test_sync_endpoint import URL, ad_account, connection, error_of  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
LEASE_SECONDS = 2


@pytest.fixture
def short_lease(settings):
    settings.META_SYNC_LEASE_SECONDS = LEASE_SECONDS


def running_run(ad_account, *, silent_for: dt.timedelta, owner: str = "dead-worker") -> SyncRun:  # noqa: F811
    beat_at = timezone.now() - silent_for
    return SyncRun.objects.create(account=ad_account.account, ad_account=ad_account, kind="full", status="running",
                                  started_at=beat_at, heartbeat_at=beat_at, lease_owner=owner)


def wait_for(condition, *, what: str, deadline_seconds: float = 60.0) -> None:
    """Poll until `condition()` holds; a bound on waiting, never an assertion about how long things took."""
    deadline = time.monotonic() + deadline_seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_a_sync_request_takes_over_a_run_whose_heartbeat_is_older_than_the_lease(
        alice_api, ad_account, short_lease, django_capture_on_commit_callbacks):  # noqa: F811
    dead = running_run(ad_account, silent_for=dt.timedelta(seconds=LEASE_SECONDS + 1))

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_api.post(URL)

    dead.refresh_from_db()
    assert response.status_code == 202
    assert (dead.status, dead.error) == ("failed", "Abandoned: no heartbeat for 2 s (worker stopped?)")
    assert SyncRun.objects.exclude(pk=dead.pk).get().status == "succeeded"


def test_a_run_with_a_fresh_heartbeat_still_makes_a_second_request_a_409(alice_api, ad_account, settings):  # noqa: F811
    settings.META_SYNC_LEASE_SECONDS = 3600
    alive = running_run(ad_account, silent_for=dt.timedelta(seconds=30), owner="live-worker")

    response = alice_api.post(URL)

    assert response.status_code == 409 and error_of(response)["code"] == "sync_in_progress"
    assert SyncRun.objects.get().pk == alive.pk and SyncRun.objects.get().status == "running"


def test_the_redelivered_task_takes_over_its_stale_run_and_finishes_it(ad_account, short_lease):  # noqa: F811
    dead = running_run(ad_account, silent_for=dt.timedelta(seconds=LEASE_SECONDS + 1))

    summary = run_sync(dead.pk)

    dead.refresh_from_db()
    assert summary.startswith("act_300001 succeeded: ")
    assert (dead.status, dead.error, SyncRun.objects.count()) == ("succeeded", "", 1)
    assert dead.rows > 0 and dead.lease_owner != "dead-worker"


def test_the_redelivered_task_leaves_a_run_whose_worker_is_alive_alone(ad_account, settings):  # noqa: F811
    settings.META_SYNC_LEASE_SECONDS = 3600
    alive = running_run(ad_account, silent_for=dt.timedelta(seconds=5), owner="live-worker")

    summary = run_sync(alive.pk)

    alive.refresh_from_db()
    assert summary == f"sync run {alive.pk}: already taken (running)"
    assert (alive.status, alive.lease_owner) == ("running", "live-worker")


def test_a_worker_that_was_only_slow_stops_at_its_next_heartbeat_once_taken_over(ad_account, short_lease):  # noqa: F811
    slow = running_run(ad_account, silent_for=dt.timedelta(seconds=LEASE_SECONDS + 1), owner="slow-worker")
    stale_copy = SyncRun.objects.get(pk=slow.pk)  # what the slow worker holds in memory

    assert take_over_stale_run(slow)
    with pytest.raises(LeaseLost):
        beat(stale_copy, rows=1)
    beat(slow, rows=2)  # the new owner renews fine

    assert SyncRun.objects.get(pk=slow.pk).rows == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("sqlite" in os.environ.get("DATABASE_URL", "sqlite"),
                    reason="the child process must reach the test database: PostgreSQL only (SQLite tests run in memory)")
def test_a_sync_killed_mid_run_is_taken_over_by_the_next_request_once_its_heartbeat_is_stale(
        alice_api, ad_account, meta_sandbox, short_lease):  # noqa: F811
    db = db_connection.settings_dict
    credentials = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else "")
    env = dict(os.environ, DATABASE_URL=f"postgres://{credentials}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
               META_GRAPH_URL=meta_sandbox.base_url, META_SYNC_LEASE_SECONDS=str(LEASE_SECONDS), META_HTTP_TIMEOUT="60",
               META_INSIGHTS_POLL_SECONDS="0.001", DEBUG="true")
    meta_sandbox.slow_next(1, seconds=30, path_contains="/insights")  # the report run's POST hangs: mid-sync
    child = subprocess.Popen([sys.executable, "manage.py", "sync_meta_insights", "--account", "acme"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: child.poll() is None and any(r.method == "POST" and r.path.endswith("/insights")
                                                      for r in list(meta_sandbox.requests)),
                 what="the child's sync to reach the insights report")
        killed = SyncRun.objects.get(status="running")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    wait_for(lambda: SyncRun.objects.filter(pk=killed.pk, heartbeat_at__lt=timezone.now() - dt.timedelta(seconds=LEASE_SECONDS)).exists(),
             what="the killed run's heartbeat to go stale")

    response = alice_api.post(URL)

    killed.refresh_from_db()
    assert response.status_code == 202
    assert (killed.kind, killed.status, killed.error) == ("insights", "failed", "Abandoned: no heartbeat for 2 s (worker stopped?)")
    taken_over = SyncRun.objects.exclude(pk=killed.pk).get()
    assert taken_over.status == "succeeded"
    assert stored_figures(ad_account) == metas_figures(meta_sandbox, taken_over) != {}  # no partial or missing day
