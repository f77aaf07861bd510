"""POST /crm/marketing/sync: queue a sync of the selected ad account (django-q2 runs it inline in tests)."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django_q.models import Task

from crm_marketing.audit import SystemEvent
from marketing.models import AdAccount, DailyInsight, RollupDirtyCell, SyncRun
from meta_oauth.models import MetaConnection
from tests.conftest import make_user

URL = "/crm/marketing/sync"


@pytest.fixture
def connection(acme, meta_sandbox) -> MetaConnection:
    connection = MetaConnection(account=acme, status=MetaConnection.Status.CONNECTED, meta_user_id="10001")
    connection.set_token(meta_sandbox.issue_token())
    connection.save()
    return connection


@pytest.fixture
def ad_account(acme, connection, settings) -> AdAccount:
    settings.META_INSIGHTS_POLL_SECONDS = 0.001
    return AdAccount.objects.create(account=acme, meta_ad_account_id="act_300001", name="Acme - Leads AR",
                                    currency="ARS", timezone_name="America/Argentina/Buenos_Aires")


def error_of(response) -> dict:
    assert response.json()["success"] is False
    return response.json()["error"]


def test_alice_queues_a_sync_and_the_worker_runs_it(alice, alice_api, ad_account, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = alice_api.post(URL)

    run = SyncRun.objects.get()
    body = response.json()
    queued = [callback.__qualname__.split(".")[0] for callback in callbacks]
    # The request queues the sync alone; the sync's insights upserts then queue the folds of their rollup cells.
    assert response.status_code == 202 and queued[0] == "enqueue_after_commit" and set(queued[1:]) == {"queue_fold"}
    assert not RollupDirtyCell.objects.filter(account=ad_account.account).exists()  # folded inline (Q_SYNC)
    assert body == {"success": True, "data": {"task_id": run.task_id}, "timestamp": body["timestamp"]}
    task = Task.objects.get(name=run.task_id)  # the id the hub can look the django-q2 task up by
    assert (task.func, task.args, task.success) == ("marketing.tasks.run_sync", (run.pk,), True)
    assert task.result.startswith("act_300001 succeeded: ")
    assert (run.kind, run.status, run.error, run.rows) == ("full", "succeeded", "", DailyInsight.objects.count())
    assert run.rows > 0 and run.graph_calls > 0 and run.finished_at >= run.started_at
    event = SystemEvent.objects.get(action="meta.ad_account.sync")
    assert (event.account_id, event.actor_id, event.target_type, event.target_id, event.details) == (
        ad_account.account_id, alice.pk, "syncrun", str(run.pk), {"ad_account": "act_300001", "task_id": run.task_id})


def test_a_marketing_member_may_sync_too(acme, ad_account, django_capture_on_commit_callbacks):
    from tests.conftest import api_client_for

    maria = make_user("maria", acme, "marketing")
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client_for(maria).post(URL)

    assert response.status_code == 202
    assert SyncRun.objects.get().status == "succeeded"


def test_a_second_sync_while_one_is_queued_is_a_409(alice_api, ad_account):
    SyncRun.objects.create(account=ad_account.account, ad_account=ad_account, kind="full", status="running",
                           started_at=timezone.now())

    response = alice_api.post(URL)

    assert response.status_code == 409
    assert error_of(response) == {"code": "sync_in_progress", "fields": {},
                                  "message": "A sync of this ad account is already queued or running."}
    assert SyncRun.objects.count() == 1
    assert not SystemEvent.objects.filter(action="meta.ad_account.sync").exists()


def test_a_run_that_stopped_reporting_progress_does_not_block_syncs(alice_api, ad_account,
                                                                    django_capture_on_commit_callbacks):
    stale = SyncRun.objects.create(account=ad_account.account, ad_account=ad_account, kind="full", status="running")
    SyncRun.objects.filter(pk=stale.pk).update(updated_at=timezone.now() - dt.timedelta(hours=1))

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_api.post(URL)

    stale.refresh_from_db()
    assert response.status_code == 202
    assert (stale.status, stale.error) == ("failed", "Abandoned: no heartbeat for 60 s (worker stopped?)")
    assert SyncRun.objects.exclude(pk=stale.pk).get().status == "succeeded"


def test_a_parked_ad_account_is_a_409_until_meta_lets_us_back(alice_api, ad_account):
    parked_until = timezone.now() + dt.timedelta(minutes=10)
    AdAccount.objects.filter(pk=ad_account.pk).update(parked_until=parked_until)

    response = alice_api.post(URL)

    assert response.status_code == 409
    assert error_of(response) == {"code": "sync_parked", "fields": {},
                                  "message": f"Meta throttled this ad account; syncing resumes after {parked_until.isoformat()}."}
    assert not SyncRun.objects.exists()


def test_syncing_without_a_meta_connection_is_a_503(alice_api, acme):
    response = alice_api.post(URL)

    assert response.status_code == 503
    assert error_of(response) == {"code": "meta_not_connected", "fields": {},
                                  "message": "Meta is not connected for this account (or needs to be reconnected)."}


def test_a_connection_that_needs_reconnecting_is_a_503(alice_api, ad_account, connection):
    MetaConnection.objects.filter(pk=connection.pk).update(status=MetaConnection.Status.NEEDS_RECONNECT)

    response = alice_api.post(URL)

    assert response.status_code == 503 and error_of(response)["code"] == "meta_not_connected"
    assert not SyncRun.objects.exists()


def test_a_connection_without_a_selected_ad_account_is_a_503(alice_api, connection):
    response = alice_api.post(URL)

    assert response.status_code == 503
    assert error_of(response) == {"code": "ad_account_not_selected", "fields": {},
                                  "message": "No ad account is selected: connect one first."}


def test_bob_the_seller_cannot_sync(bob_api, ad_account):
    response = bob_api.post(URL)

    assert response.status_code == 403
    assert error_of(response) == {"code": "permission_denied", "fields": {},
                                  "message": "The seller role cannot use this endpoint."}
    assert not SyncRun.objects.exists()


def test_mallory_syncs_only_her_own_account(mallory_api, ad_account):
    response = mallory_api.post(URL)

    assert response.status_code == 503  # globex has no connection; acme's is never used
    assert not SyncRun.objects.exists()


def test_anonymous_calls_are_a_401(anonymous_api, ad_account):
    assert anonymous_api.post(URL).status_code == 401


def test_a_sync_whose_token_was_revoked_meanwhile_fails_and_flags_the_connection(
        alice_api, ad_account, connection, meta_sandbox, django_capture_on_commit_callbacks):
    meta_sandbox.expire_token()

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_api.post(URL)

    connection.refresh_from_db()
    run = SyncRun.objects.get()
    assert response.status_code == 202
    assert (run.status, run.error) == ("failed", "Meta rejected the access token (code 190): reconnect Meta to resume syncing.")
    assert connection.status == MetaConnection.Status.NEEDS_RECONNECT
