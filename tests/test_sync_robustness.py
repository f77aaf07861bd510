"""Sync robustness against the sandbox: the report run's POST is retried, failed runs retry on a short
backoff, an unhinted throttle parks (5 min, doubling), appsecret_proof on every call, Graph batch requests."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import pytest
import requests
from django.utils import timezone

from crm_marketing.graph import GraphClient, GraphError
from marketing.models import SyncRun
from marketing.services.runs import due_ad_accounts
from marketing.services.sync import sync_ad_account
from tests.test_sync import FAST, ad_account, client, connection, meta_token  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


def calls(sandbox, method: str, path: str) -> list:
    return [r for r in sandbox.requests if r.method == method and r.path == path]


def sync_insights(ad_account, client):  # noqa: F811
    return sync_ad_account(ad_account, client=client, kind=SyncRun.Kind.INSIGHTS, backfill_seconds=0, **FAST)


# -- the report run's POST ---------------------------------------------------------------------------------
@pytest.mark.parametrize("status, code", [(500, None), (503, None), (400, 2)])
def test_one_transient_error_on_the_post_that_starts_the_report_is_retried_and_the_sync_succeeds(
        ad_account, client, meta_sandbox, status, code):  # noqa: F811
    meta_sandbox.fail_next(1, status=status, code=code, path_contains="act_300001/insights")

    result = sync_insights(ad_account, client)

    posts = calls(meta_sandbox, "POST", "/act_300001/insights")
    assert result.status == "succeeded" and result.rows > 0
    assert [r.status for r in posts[:2]] == [status, 200]
    assert posts[0].body["time_range"] == posts[1].body["time_range"]  # the same report asked for again


def test_a_post_that_is_not_marked_retryable_is_still_never_retried(meta_sandbox, client):  # noqa: F811
    meta_sandbox.fail_next(1, status=500, path_contains="act_300001/insights")

    with pytest.raises(GraphError):
        client.post("act_300001/insights", {"level": "ad", "time_range": {"since": "2026-11-01", "until": "2026-11-02"}})

    assert len(calls(meta_sandbox, "POST", "/act_300001/insights")) == 1


# -- a failed run retries on a short backoff ---------------------------------------------------------------
def failed_runs(ad_account, finished_at: dt.datetime, count: int) -> None:  # noqa: F811
    for n in range(count):
        run = SyncRun.objects.create(account=ad_account.account, ad_account=ad_account, kind="full", status="failed",
                                     finished_at=finished_at, error="Graph POST failed")
        SyncRun.objects.filter(pk=run.pk).update(created_at=finished_at - dt.timedelta(minutes=count - 1 - n))


@pytest.mark.parametrize("failures, backoff", [(1, 5), (2, 15), (3, 45), (4, 4 * 60)])
def test_after_failed_runs_in_a_row_the_next_try_comes_after_5_15_45_minutes_then_the_interval(
        ad_account, failures, backoff):  # noqa: F811
    finished_at = timezone.now() - dt.timedelta(hours=1)
    failed_runs(ad_account, finished_at, failures)

    before = due_ad_accounts(now=finished_at + dt.timedelta(minutes=backoff) - dt.timedelta(seconds=1))
    after = due_ad_accounts(now=finished_at + dt.timedelta(minutes=backoff))

    assert (before, after) == ([], [ad_account])


def test_a_succeeded_run_waits_the_whole_interval(ad_account):  # noqa: F811
    run = SyncRun.objects.create(account=ad_account.account, ad_account=ad_account, kind="full", status="succeeded")
    created_at = SyncRun.objects.get(pk=run.pk).created_at

    assert due_ad_accounts(now=created_at + dt.timedelta(hours=4) - dt.timedelta(seconds=1)) == []
    assert due_ad_accounts(now=created_at + dt.timedelta(hours=4)) == [ad_account]


# -- throttling without a regain time ------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["act_300001/insights", "act_300001/campaigns"])
def test_code_80004_without_a_regain_time_parks_5_minutes_then_10_without_retrying(ad_account, client, meta_sandbox, path):  # noqa: F811
    meta_sandbox.fail_next(2, status=400, code=80004, path_contains=path)

    first = sync_ad_account(ad_account, client=client, backfill_seconds=0, **FAST)
    ad_account.refresh_from_db()
    first_park = ad_account.parked_until - SyncRun.objects.get(pk=first.run_id).finished_at
    type(ad_account).objects.filter(pk=ad_account.pk).update(parked_until=timezone.now() - dt.timedelta(seconds=1))
    ad_account.refresh_from_db()
    second = sync_ad_account(ad_account, client=client, backfill_seconds=0, **FAST)
    ad_account.refresh_from_db()
    second_park = ad_account.parked_until - SyncRun.objects.get(pk=second.run_id).finished_at

    assert (first.status, second.status) == ("parked", "parked") and "code 80004" in first.error
    assert dt.timedelta(minutes=4, seconds=50) <= first_park <= dt.timedelta(minutes=5)
    assert dt.timedelta(minutes=9, seconds=50) <= second_park <= dt.timedelta(minutes=10)
    # One throttled call per sync, never hammered with retries: the entity batch (inside which the campaigns
    # listing was throttled), or the batch and the report's POST.
    assert len(meta_sandbox.requests) == {"act_300001/campaigns": 2, "act_300001/insights": 4}[path]


def test_a_regain_time_from_meta_still_sets_the_park(ad_account, client, meta_sandbox):  # noqa: F811
    meta_sandbox.fail_next(1, status=400, code=80004, regain_minutes=30, path_contains="act_300001/insights")

    result = sync_insights(ad_account, client)

    ad_account.refresh_from_db()
    park = ad_account.parked_until - SyncRun.objects.get(pk=result.run_id).finished_at
    assert result.status == "parked"
    assert dt.timedelta(minutes=29, seconds=50) <= park <= dt.timedelta(minutes=30)


# -- appsecret_proof -----------------------------------------------------------------------------------------
def proof_of(token: str, secret: str = "sandbox-secret") -> str:
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()


def test_every_call_of_a_sync_carries_the_appsecret_proof_of_its_token(ad_account, client, meta_sandbox, meta_token):  # noqa: F811
    meta_sandbox.require_appsecret_proof()

    result = sync_ad_account(ad_account, client=client, backfill_seconds=0, **FAST)

    assert result.status == "succeeded"
    assert meta_sandbox.requests and {r.query.get("appsecret_proof") for r in meta_sandbox.requests} == {proof_of(meta_token)}
    assert {r.status for r in meta_sandbox.requests} == {200}


def test_an_app_that_requires_the_proof_refuses_a_call_without_it_or_with_a_wrong_one(meta_sandbox, meta_token, settings):
    meta_sandbox.require_appsecret_proof()
    bare = requests.get(f"{meta_sandbox.base_url}/v26.0/me", headers={"Authorization": f"Bearer {meta_token}"}, timeout=5)
    settings.META_APP_SECRET = "not-the-app-secret"

    with pytest.raises(GraphError) as wrong:
        GraphClient(meta_token, sleep=lambda s: None).get("me")

    assert bare.status_code == 400
    assert {k: bare.json()["error"][k] for k in ("message", "type", "code")} == {
        "message": "API calls from the server require an appsecret_proof argument", "type": "GraphMethodException", "code": 100}
    assert (wrong.value.code, wrong.value.message) == (100, "Invalid appsecret_proof provided in the API argument")


def test_the_app_token_carries_no_proof(meta_sandbox, meta_token):
    meta_sandbox.require_appsecret_proof()

    data = GraphClient.app(sleep=lambda s: None).get("debug_token", {"input_token": meta_token})["data"]

    assert data["is_valid"] is True
    assert "appsecret_proof" not in meta_sandbox.requests[-1].query


# -- fields as a JSON array ----------------------------------------------------------------------------------
def test_the_sandbox_takes_fields_as_a_json_array_like_graph(meta_sandbox, meta_token):
    response = requests.get(f"{meta_sandbox.base_url}/v26.0/act_300001/campaigns",
                            params={"fields": json.dumps(["id", "name"]), "limit": 1},
                            headers={"Authorization": f"Bearer {meta_token}"}, timeout=5)

    assert response.status_code == 200
    assert response.json()["data"] == [{"id": "400001", "name": "Leads Q4 - Formulario"}]


# -- batch requests --------------------------------------------------------------------------------------------
def test_the_three_entity_listings_of_a_sync_are_one_batch_call(ad_account, client, meta_sandbox):  # noqa: F811
    result = sync_ad_account(ad_account, client=client, kind=SyncRun.Kind.ENTITIES, **FAST)

    assert result.status == "succeeded" and result.entities == 12
    assert [(r.method, r.path) for r in meta_sandbox.requests] == [("POST", "/")]
    assert [call["relative_url"].split("?")[0] for call in meta_sandbox.requests[0].body["batch"]] == [
        "act_300001/campaigns", "act_300001/adsets", "act_300001/ads"]
    assert SyncRun.objects.get(pk=result.run_id).graph_calls == 1


def test_a_batch_answers_each_call_in_order_and_an_edge_with_more_pages_is_followed(ad_account, meta_sandbox, client):  # noqa: F811
    campaigns, me, missing = client.batch([("act_300001/campaigns", {"fields": "id", "limit": 2}), ("me", {"fields": "id"}),
                                           ("999999999", None)])

    assert campaigns["data"] == [{"id": "400001"}, {"id": "400002"}]
    assert client.get(campaigns["paging"]["next"], next_link=True)["data"] == [{"id": "400003"}]
    assert me == {"id": "10001"}
    assert isinstance(missing, GraphError) and (missing.http_status, missing.code) == (400, 100)
    assert [(r.method, r.path) for r in meta_sandbox.requests] == [("POST", "/"), ("GET", "/act_300001/campaigns")]


def test_a_transient_error_inside_a_batch_retries_that_call_alone(ad_account, meta_sandbox, client):  # noqa: F811
    meta_sandbox.fail_next(1, status=500, path_contains="/adsets")

    result = sync_ad_account(ad_account, client=client, kind=SyncRun.Kind.ENTITIES, **FAST)

    assert result.status == "succeeded" and result.entities == 12
    assert [(r.method, r.path, r.status) for r in meta_sandbox.requests] == [("POST", "/", 200), ("GET", "/act_300001/adsets", 200)]
