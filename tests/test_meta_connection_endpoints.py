"""/crm/marketing token-status, meta-portfolios, meta-accounts, connect."""
from __future__ import annotations

import pytest
from rest_framework import serializers

from crm_marketing.audit import SystemEvent
from marketing.models import AdAccount, DailyInsight, SyncRun
from meta_oauth.backends import META_SCOPES
from meta_oauth.models import MetaConnection
from tests import factories
from tests.factories import api_client_for, make_user


def connect_meta(account, sandbox, *, meta_user_id: str = "10001", days: int = 60) -> MetaConnection:
    """A connection as the OAuth callback leaves it: a real sandbox token, no ad account or number chosen yet."""
    return factories.connect_meta(account, sandbox, meta_user_id=meta_user_id, ad_account=None, whatsapp=False,
                                  scopes=META_SCOPES, expires_in_days=days)


def iso(moment) -> str:
    return serializers.DateTimeField().to_representation(moment)


def error_of(response) -> tuple[int, str, dict]:
    body = response.json()
    assert body["success"] is False and set(body["error"]) == {"code", "message", "fields"}
    return response.status_code, body["error"]["code"], body["error"]["fields"]


def graph_paths(sandbox) -> list[str]:
    return [r.path for r in sandbox.requests]


@pytest.fixture
def fast_retries(settings):
    settings.META_MAX_RETRIES = 1
    settings.META_MAX_BACKOFF_SECONDS = 1


# -- token-status ------------------------------------------------------------------------------------------
def test_token_status_without_a_connection_offers_the_connect_url(meta_sandbox, alice_api):
    response = alice_api.get("/crm/marketing/token-status")

    assert response.status_code == 200
    assert response.json()["data"] == {
        "connected": False, "needs_reconnect": False, "expires_at": None, "days_left": None, "scopes": [],
        "business_managers": None, "ad_accounts": None, "ad_account": None, "connect_url": "/crm/auth/meta/url"}
    assert meta_sandbox.requests == []


def test_token_status_when_connected_counts_portfolios_and_ad_accounts_live(meta_sandbox, alice_api, acme):
    connection = connect_meta(acme, meta_sandbox)
    AdAccount.objects.create(account=acme, meta_ad_account_id="act_300001", name="Acme - Leads AR", currency="ARS")

    response = alice_api.get("/crm/marketing/token-status")

    assert response.status_code == 200
    assert response.json()["data"] == {
        "connected": True, "needs_reconnect": False, "expires_at": iso(connection.token_expires_at), "days_left": 60,
        "scopes": META_SCOPES, "business_managers": 2, "ad_accounts": 3,
        "ad_account": {"id": "act_300001", "name": "Acme - Leads AR", "currency": "ARS"}}
    assert graph_paths(meta_sandbox) == ["/me/businesses", "/me/adaccounts"]


def test_token_status_flips_the_connection_to_needs_reconnect_when_meta_says_190(meta_sandbox, alice_api, acme):
    connection = connect_meta(acme, meta_sandbox)
    meta_sandbox.expire_token()

    response = alice_api.get("/crm/marketing/token-status")

    assert response.status_code == 200
    assert response.json()["data"] == {
        "connected": False, "needs_reconnect": True, "expires_at": iso(connection.token_expires_at), "days_left": 60,
        "scopes": META_SCOPES, "business_managers": None, "ad_accounts": None, "ad_account": None,
        "connect_url": "/crm/auth/meta/url"}
    connection.refresh_from_db()
    assert connection.status == "needs_reconnect" and "190" in connection.last_error
    assert graph_paths(meta_sandbox) == ["/me/businesses"]


def test_token_status_answers_with_what_it_knows_when_meta_keeps_failing(meta_sandbox, alice_api, acme, fast_retries):
    connect_meta(acme, meta_sandbox)
    meta_sandbox.fail_next(10, status=500, path_contains="/me/businesses")

    response = alice_api.get("/crm/marketing/token-status")

    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["connected"], data["needs_reconnect"], data["business_managers"], data["ad_accounts"]) == (True, False, None, 3)
    assert MetaConnection.objects.get(account=acme).status == "connected"


def test_an_expired_token_needs_reconnect_without_asking_meta(meta_sandbox, alice_api, acme):
    connect_meta(acme, meta_sandbox, days=-1)

    data = alice_api.get("/crm/marketing/token-status").json()["data"]

    assert (data["connected"], data["needs_reconnect"], data["days_left"], data["connect_url"]) == (False, True, 0, "/crm/auth/meta/url")
    assert meta_sandbox.requests == []


# -- portfolios and ad accounts ----------------------------------------------------------------------------
def test_meta_portfolios_lists_each_business_manager_with_its_ad_account_count(meta_sandbox, alice_api, acme):
    connect_meta(acme, meta_sandbox)

    response = alice_api.get("/crm/marketing/meta-portfolios")

    assert response.status_code == 200
    assert response.json()["data"] == [
        {"id": "200001", "name": "Acme Ventas BM", "ad_accounts_count": 2},
        {"id": "200002", "name": "Acme Agency BM", "ad_accounts_count": 0}]


def test_meta_accounts_of_a_portfolio_names_the_account_status(meta_sandbox, alice_api, acme):
    connect_meta(acme, meta_sandbox)

    response = alice_api.get("/crm/marketing/meta-accounts?portfolio_id=200001")

    assert response.status_code == 200
    assert response.json()["data"] == [
        {"id": "act_300001", "name": "Acme - Leads AR", "currency": "ARS", "timezone": "America/Argentina/Buenos_Aires", "status": "ACTIVE"},
        {"id": "act_300002", "name": "Acme - Legacy", "currency": "USD", "timezone": "America/New_York", "status": "DISABLED"}]
    assert graph_paths(meta_sandbox) == ["/200001/owned_ad_accounts"]


def test_meta_accounts_follows_every_page(meta_sandbox, alice_api, acme):
    connect_meta(acme, meta_sandbox)
    state = meta_sandbox.state
    with state.lock:
        for n in range(230):
            account_id = f"act_31{n:04d}"
            state.ad_accounts[account_id] = {"id": account_id, "account_id": account_id[4:], "name": f"Extra {n}",
                                             "currency": "USD", "timezone_name": "UTC", "account_status": 101,
                                             "business_id": None}
            state.users["10001"]["ad_accounts"].append(account_id)

    response = alice_api.get("/crm/marketing/meta-accounts")

    assert response.status_code == 200
    data = response.json()["data"]
    assert len(data) == 233
    assert data[:3] == [
        {"id": "act_300001", "name": "Acme - Leads AR", "currency": "ARS", "timezone": "America/Argentina/Buenos_Aires", "status": "ACTIVE"},
        {"id": "act_300002", "name": "Acme - Legacy", "currency": "USD", "timezone": "America/New_York", "status": "DISABLED"},
        {"id": "act_300003", "name": "Acme - Europa (cliente)", "currency": "EUR", "timezone": "Europe/Madrid", "status": "ACTIVE"}]
    assert data[-1] == {"id": "act_310229", "name": "Extra 229", "currency": "USD", "timezone": "UTC", "status": "CLOSED"}
    assert len({a["id"] for a in data}) == 233
    assert graph_paths(meta_sandbox) == ["/me/adaccounts"] * 3


def test_a_malformed_or_unknown_portfolio_is_a_400_on_portfolio_id(meta_sandbox, alice_api, acme):
    connect_meta(acme, meta_sandbox)

    assert error_of(alice_api.get("/crm/marketing/meta-accounts?portfolio_id=me/adaccounts"))[:2] == (400, "validation_error")
    assert graph_paths(meta_sandbox) == []
    status, code, fields = error_of(alice_api.get("/crm/marketing/meta-accounts?portfolio_id=999999"))
    assert (status, code, list(fields)) == (400, "validation_error", ["portfolio_id"])


def test_a_190_on_meta_accounts_is_a_503_and_flips_the_connection(meta_sandbox, alice_api, acme):
    connect_meta(acme, meta_sandbox)
    meta_sandbox.expire_token()

    assert error_of(alice_api.get("/crm/marketing/meta-accounts")) == (503, "meta_reconnect_required", {})
    assert MetaConnection.objects.get(account=acme).status == "needs_reconnect"
    assert error_of(alice_api.get("/crm/marketing/meta-accounts")) == (503, "meta_not_connected", {})
    assert graph_paths(meta_sandbox) == ["/me/adaccounts"]


def test_meta_failing_on_every_retry_is_a_502_never_a_500(meta_sandbox, alice_api, acme, fast_retries):
    connect_meta(acme, meta_sandbox)
    meta_sandbox.fail_next(10, status=500)

    response = alice_api.get("/crm/marketing/meta-portfolios")

    assert error_of(response) == (502, "meta_error", {})
    assert "Retry-After" not in response
    assert graph_paths(meta_sandbox) == ["/me/businesses"] * 2
    assert MetaConnection.objects.get(account=acme).status == "connected"


def test_meta_throttling_is_a_502_that_passes_on_retry_after(meta_sandbox, alice_api, acme, fast_retries):
    connect_meta(acme, meta_sandbox)
    meta_sandbox.fail_next(3, status=429, code=17, retry_after=120)

    response = alice_api.get("/crm/marketing/meta-accounts")

    assert error_of(response) == (502, "meta_error", {})
    assert response["Retry-After"] == "120"


def test_a_throttled_meta_answers_the_hub_at_once_instead_of_waiting_out_retry_after(meta_sandbox, alice_api, acme):
    connect_meta(acme, meta_sandbox)
    meta_sandbox.fail_next(3, status=429, code=17, retry_after=30)  # 30 s > META_INTERACTIVE_MAX_WAIT_SECONDS

    response = alice_api.get("/crm/marketing/meta-accounts")

    assert error_of(response) == (502, "meta_error", {})
    assert response["Retry-After"] == "30"
    assert graph_paths(meta_sandbox) == ["/me/adaccounts"]  # asked once: no waiting out the throttle in the request


def test_without_a_connection_portfolios_accounts_and_connect_are_503(meta_sandbox, alice_api):
    for response in (alice_api.get("/crm/marketing/meta-portfolios"), alice_api.get("/crm/marketing/meta-accounts"),
                     alice_api.post("/crm/marketing/connect", {"account_id": "act_300001"}, format="json")):
        assert error_of(response) == (503, "meta_not_connected", {})
    assert meta_sandbox.requests == []


# -- connect -------------------------------------------------------------------------------------------------
def test_connect_checks_the_ad_account_with_meta_and_selects_it(meta_sandbox, alice_api, alice, acme):
    connect_meta(acme, meta_sandbox)

    response = alice_api.post("/crm/marketing/connect", {"account_id": "act_300001", "account_name": "Leads"}, format="json")

    assert response.status_code == 200
    assert response.json()["data"] == {
        "connected": True, "account_id": "act_300001", "account_name": "Acme - Leads AR",
        "message": "The hub now reports on Acme - Leads AR (act_300001); its first sync has started."}
    ad_account = AdAccount.objects.get(account=acme)
    assert (ad_account.meta_ad_account_id, ad_account.name, ad_account.currency, ad_account.timezone_name,
            ad_account.account_status, ad_account.is_selected) == (
        "act_300001", "Acme - Leads AR", "ARS", "America/Argentina/Buenos_Aires", 1, True)
    event = SystemEvent.objects.get(action="meta.ad_account.connect")
    assert (event.account, event.actor, event.target_id) == (acme, alice, str(ad_account.pk))
    assert graph_paths(meta_sandbox) == ["/act_300001"]
    assert list(SyncRun.objects.filter(ad_account=ad_account).values_list("kind", "status")) == [("full", "queued")]


def test_connecting_an_ad_account_runs_its_first_sync_once_committed(meta_sandbox, alice_api, acme, django_capture_on_commit_callbacks):
    connect_meta(acme, meta_sandbox)

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_api.post("/crm/marketing/connect", {"account_id": "act_300001"}, format="json")

    assert response.status_code == 200
    run = SyncRun.objects.get(ad_account__meta_ad_account_id="act_300001")
    assert run.status == "succeeded"
    assert DailyInsight.objects.filter(account=acme).count() == run.rows > 0


def test_connecting_another_ad_account_unselects_the_previous_one(meta_sandbox, alice_api, acme):
    connect_meta(acme, meta_sandbox)
    alice_api.post("/crm/marketing/connect", {"account_id": "act_300001"}, format="json")

    response = alice_api.post("/crm/marketing/connect", {"account_id": "300003", "account_name": "Europa"}, format="json")

    assert response.json()["data"]["account_id"] == "act_300003"
    rows = dict(AdAccount.objects.filter(account=acme).values_list("meta_ad_account_id", "is_selected"))
    assert rows == {"act_300001": False, "act_300003": True}
    assert alice_api.get("/crm/marketing/token-status").json()["data"]["ad_account"] == {
        "id": "act_300003", "name": "Acme - Europa (cliente)", "currency": "EUR"}


def test_connect_refuses_an_ad_account_the_token_cannot_see(meta_sandbox, alice_api, acme):
    connect_meta(acme, meta_sandbox, meta_user_id="10002")  # sees only act_300003

    status, code, fields = error_of(alice_api.post("/crm/marketing/connect", {"account_id": "act_300001"}, format="json"))

    assert (status, code, list(fields)) == (400, "validation_error", ["account_id"])
    assert not AdAccount.objects.exists()
    assert not SystemEvent.objects.filter(action="meta.ad_account.connect").exists()


def test_connect_refuses_a_malformed_id_without_asking_meta(meta_sandbox, alice_api, acme):
    connect_meta(acme, meta_sandbox)

    for body in ({"account_id": "act_12ab"}, {"account_id": "../me"}, {}, {"account_id": "act_1", "account": 2}):
        status, code, fields = error_of(alice_api.post("/crm/marketing/connect", body, format="json"))
        assert (status, code) == (400, "validation_error") and fields
    assert meta_sandbox.requests == []


def test_a_190_on_connect_is_a_503_and_flips_the_connection(meta_sandbox, alice_api, acme):
    connect_meta(acme, meta_sandbox)
    meta_sandbox.expire_token()

    assert error_of(alice_api.post("/crm/marketing/connect", {"account_id": "act_300001"}, format="json")) == (
        503, "meta_reconnect_required", {})
    assert MetaConnection.objects.get(account=acme).status == "needs_reconnect"
    assert not AdAccount.objects.exists()


# -- roles and tenancy ----------------------------------------------------------------------------------------
def test_a_seller_sees_none_of_the_connection_endpoints(meta_sandbox, bob_api, acme):
    connect_meta(acme, meta_sandbox)
    for response in (bob_api.get("/crm/marketing/token-status"), bob_api.get("/crm/marketing/meta-portfolios"),
                     bob_api.get("/crm/marketing/meta-accounts"),
                     bob_api.post("/crm/marketing/connect", {"account_id": "act_300001"}, format="json")):
        assert error_of(response)[:2] == (403, "permission_denied")
    assert meta_sandbox.requests == []
    assert not AdAccount.objects.exists()


def test_marketing_reads_the_connection_but_only_ceo_and_admin_connect(meta_sandbox, acme):
    connect_meta(acme, meta_sandbox)
    marketer = api_client_for(make_user("marta", acme, "marketing"))
    admin = api_client_for(make_user("adam", acme, "admin"))

    assert marketer.get("/crm/marketing/meta-accounts").status_code == 200
    assert error_of(marketer.post("/crm/marketing/connect", {"account_id": "act_300001"}, format="json"))[:2] == (403, "permission_denied")
    assert admin.post("/crm/marketing/connect", {"account_id": "act_300001"}, format="json").status_code == 200


def test_mallory_sees_only_her_own_unconnected_account(meta_sandbox, mallory_api, alice_api, acme, globex):
    connect_meta(acme, meta_sandbox)
    alice_api.post("/crm/marketing/connect", {"account_id": "act_300001"}, format="json")
    calls_before = len(meta_sandbox.requests)

    assert mallory_api.get("/crm/marketing/token-status").json()["data"] == {
        "connected": False, "needs_reconnect": False, "expires_at": None, "days_left": None, "scopes": [],
        "business_managers": None, "ad_accounts": None, "ad_account": None, "connect_url": "/crm/auth/meta/url"}
    assert error_of(mallory_api.get("/crm/marketing/meta-accounts")) == (503, "meta_not_connected", {})
    assert error_of(mallory_api.get("/crm/marketing/meta-portfolios")) == (503, "meta_not_connected", {})
    assert error_of(mallory_api.post("/crm/marketing/connect", {"account_id": "act_300001"}, format="json")) == (
        503, "meta_not_connected", {})
    assert error_of(mallory_api.get("/crm/marketing/meta-accounts?portfolio_id=200001")) == (503, "meta_not_connected", {})
    assert len(meta_sandbox.requests) == calls_before
    assert mallory_api.post("/crm/auth/meta/disconnect", {}, format="json").json()["data"] == {"disconnected": True}
    assert MetaConnection.objects.get(account=acme).status == "connected"
    assert not AdAccount.objects.filter(account=globex).exists()


def test_an_x_account_header_cannot_reach_another_tenant(meta_sandbox, mallory_api, acme):
    connect_meta(acme, meta_sandbox)
    assert error_of(mallory_api.get("/crm/marketing/token-status", HTTP_X_ACCOUNT="acme"))[:2] == (403, "permission_denied")
