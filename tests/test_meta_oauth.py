"""The Meta OAuth connection: /crm/auth/meta/url, the dialog (the sandbox's), the callback, disconnect."""
from __future__ import annotations

import json
import logging
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.db import connection as db_connection
from django.utils import timezone
from rest_framework.test import APIClient

from crm_marketing.audit import SystemEvent
from marketing.models import AdAccount
from meta_oauth.backends import META_SCOPES
from meta_oauth.models import MetaConnection, MetaPage, OAuthState
from tests.conftest import make_user

CALLBACK = "http://testserver/crm/auth/meta/callback"


def browser(user) -> APIClient:
    """A client with a real logged-in session, as the hub page has."""
    client = APIClient()
    client.force_login(user)
    return client


def start_dialog(client: APIClient) -> dict:
    response = client.get("/crm/auth/meta/url")
    assert response.status_code == 200, response.content
    return response.json()["data"]


def through_dialog(sandbox, auth_url: str, decision: str = "approve") -> str:
    """Follow the dialog URL like the browser does; returns the callback path Meta redirects to."""
    sandbox.set_dialog_decision(decision)
    answer = requests.get(auth_url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    return f"{location.path}?{location.query}"


def oauth_calls(sandbox, path: str = "/oauth/access_token") -> list:
    return [r for r in sandbox.requests if r.path == path]


def assert_nothing_stored(account) -> None:
    assert not MetaConnection.objects.filter(account=account).exists()
    assert not SystemEvent.objects.filter(action="meta.connect").exists()


def test_the_auth_url_points_at_the_meta_dialog_with_our_app_scopes_and_a_fresh_state(meta_sandbox, alice, acme):
    data = start_dialog(browser(alice))

    assert data == {"auth_url": data["auth_url"], "state": data["state"], "expires_in": 600}
    url = urlsplit(data["auth_url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{meta_sandbox.base_url}/v26.0/dialog/oauth"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query == {"client_id": "sandbox-app", "redirect_uri": CALLBACK, "state": data["state"],
                     "scope": ",".join(META_SCOPES), "return_scopes": "true"}
    assert len(data["state"]) >= 32
    row = OAuthState.objects.get()
    assert (row.account, row.user, row.used_at) == (acme, alice, None)
    assert data["state"] not in row.state_hash


def test_each_auth_url_has_its_own_state(meta_sandbox, alice):
    client = browser(alice)
    assert start_dialog(client)["state"] != start_dialog(client)["state"]
    assert OAuthState.objects.count() == 2


def test_a_full_round_trip_stores_the_long_lived_token_encrypted_with_its_expiry_and_scopes(meta_sandbox, alice, acme):
    client = browser(alice)
    callback = through_dialog(meta_sandbox, start_dialog(client)["auth_url"])

    response = client.get(callback)

    assert response.status_code == 302
    assert response["Location"] == "/hub/marketing?meta=connected"
    connection = MetaConnection.objects.get(account=acme)
    token = connection.get_token()
    assert token.startswith("EAAsbxLong")
    assert connection.status == "connected"
    assert (connection.meta_user_id, connection.meta_user_name) == ("10001", "Ana Gerente")
    assert connection.connected_by == alice
    assert connection.scopes == META_SCOPES
    assert timedelta(days=59) < connection.token_expires_at - timezone.now() < timedelta(days=61)
    assert timedelta(days=89) < connection.data_access_expires_at - timezone.now() < timedelta(days=91)
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT token_ciphertext FROM meta_oauth_metaconnection WHERE id = %s", [connection.pk])
        (ciphertext,) = cursor.fetchone()
    assert ciphertext and token not in ciphertext
    event = SystemEvent.objects.get(action="meta.connect")
    assert (event.account, event.actor, event.target_type, event.target_id) == (acme, alice, "metaconnection", str(connection.pk))
    assert OAuthState.objects.get().used_at is not None


def test_the_stored_token_travels_in_authorization_headers_never_in_a_url(meta_sandbox, alice, acme):
    client = browser(alice)
    client.get(through_dialog(meta_sandbox, start_dialog(client)["auth_url"]))
    token = MetaConnection.objects.get(account=acme).get_token()

    in_urls = [r for r in meta_sandbox.requests if token in r.path or token in json.dumps(r.query)]
    in_bodies = [(r.method, r.path, sorted(k for k, v in r.body.items() if v == token))
                 for r in meta_sandbox.requests if token in json.dumps(r.body)]
    with_header = [r.path for r in meta_sandbox.requests if r.headers.get("Authorization") == f"Bearer {token}"]

    assert in_urls == []
    # debug_token needs the token it inspects: it goes as a POST form field, the app token in the header.
    assert in_bodies == [("POST", "/debug_token", ["input_token"])]
    assert with_header == ["/me"]
    secret_in_url = [r.path for r in meta_sandbox.requests if "sandbox-secret" in json.dumps(r.query)]
    assert secret_in_url == []
    debug = oauth_calls(meta_sandbox, "/debug_token")[0]
    assert debug.headers["Authorization"] == "Bearer sandbox-app|sandbox-secret"


def test_exchanges_are_post_forms_code_first_then_the_long_lived_grant(meta_sandbox, alice):
    client = browser(alice)
    client.get(through_dialog(meta_sandbox, start_dialog(client)["auth_url"]))

    exchanges = oauth_calls(meta_sandbox)
    assert [(r.method, r.query) for r in exchanges] == [("POST", {}), ("POST", {})]
    assert "code" in exchanges[0].body and exchanges[0].body["redirect_uri"] == CALLBACK
    assert exchanges[1].body["grant_type"] == "fb_exchange_token"


def test_reconnecting_replaces_the_token_of_the_same_connection(meta_sandbox, alice, acme):
    client = browser(alice)
    client.get(through_dialog(meta_sandbox, start_dialog(client)["auth_url"]))
    first = MetaConnection.objects.get(account=acme)
    first_token = first.get_token()

    response = client.get(through_dialog(meta_sandbox, start_dialog(client)["auth_url"]))

    assert response["Location"] == "/hub/marketing?meta=connected"
    second = MetaConnection.objects.get(account=acme)
    assert second.pk == first.pk and second.get_token() != first_token


def test_a_denied_dialog_comes_back_as_access_denied_and_stores_nothing(meta_sandbox, alice, acme):
    client = browser(alice)
    callback = through_dialog(meta_sandbox, start_dialog(client)["auth_url"], decision="deny")
    assert "error=access_denied" in callback

    response = client.get(callback)

    assert response.status_code == 302
    assert response["Location"] == "/hub/marketing?meta_error=access_denied"
    assert_nothing_stored(acme)
    assert oauth_calls(meta_sandbox) == []


def test_a_replayed_callback_is_an_invalid_state_and_exchanges_nothing_more(meta_sandbox, alice, acme):
    client = browser(alice)
    callback = through_dialog(meta_sandbox, start_dialog(client)["auth_url"])
    assert client.get(callback)["Location"] == "/hub/marketing?meta=connected"
    calls_after_first = len(meta_sandbox.requests)

    response = client.get(callback)

    assert response.status_code == 302
    assert response["Location"] == "/hub/marketing?meta_error=invalid_state"
    assert len(meta_sandbox.requests) == calls_after_first
    assert SystemEvent.objects.filter(action="meta.connect").count() == 1


def test_another_users_state_is_invalid_for_mallory_and_still_good_for_alice(meta_sandbox, alice, acme, mallory, globex):
    alice_client = browser(alice)
    callback = through_dialog(meta_sandbox, start_dialog(alice_client)["auth_url"])

    response = browser(mallory).get(callback)

    assert response["Location"] == "/hub/marketing?meta_error=invalid_state"
    assert_nothing_stored(acme)
    assert_nothing_stored(globex)
    assert oauth_calls(meta_sandbox) == []
    assert alice_client.get(callback)["Location"] == "/hub/marketing?meta=connected"


def test_a_state_from_another_browser_session_is_invalid(meta_sandbox, alice, acme):
    callback = through_dialog(meta_sandbox, start_dialog(browser(alice))["auth_url"])

    response = browser(alice).get(callback)  # a second login: another session

    assert response["Location"] == "/hub/marketing?meta_error=invalid_state"
    assert_nothing_stored(acme)
    assert oauth_calls(meta_sandbox) == []


def test_an_expired_state_is_invalid(meta_sandbox, alice, acme):
    client = browser(alice)
    callback = through_dialog(meta_sandbox, start_dialog(client)["auth_url"])
    OAuthState.objects.update(created_at=timezone.now() - timedelta(minutes=11))

    response = client.get(callback)

    assert response["Location"] == "/hub/marketing?meta_error=invalid_state"
    assert_nothing_stored(acme)
    assert oauth_calls(meta_sandbox) == []


def test_a_callback_without_a_state_or_without_a_login_is_an_invalid_state(meta_sandbox, alice, acme):
    client = browser(alice)
    callback = through_dialog(meta_sandbox, start_dialog(client)["auth_url"])

    assert client.get("/crm/auth/meta/callback?code=abc")["Location"] == "/hub/marketing?meta_error=invalid_state"
    assert APIClient().get(callback)["Location"] == "/hub/marketing?meta_error=invalid_state"
    assert_nothing_stored(acme)


def test_a_code_meta_rejects_is_a_token_exchange_failure(meta_sandbox, alice, acme):
    client = browser(alice)
    callback = through_dialog(meta_sandbox, start_dialog(client)["auth_url"])
    meta_sandbox.fail_next(1, status=400, code=100, path_contains="oauth/access_token")

    response = client.get(callback)

    assert response.status_code == 302
    assert response["Location"] == "/hub/marketing?meta_error=token_exchange_failed"
    assert_nothing_stored(acme)


def test_meta_down_during_debug_token_is_a_token_exchange_failure_not_a_500(meta_sandbox, alice, acme):
    client = browser(alice)
    callback = through_dialog(meta_sandbox, start_dialog(client)["auth_url"])
    meta_sandbox.fail_next(5, status=500, path_contains="debug_token")

    response = client.get(callback)

    assert response["Location"] == "/hub/marketing?meta_error=token_exchange_failed"
    assert_nothing_stored(acme)


def test_a_seller_cannot_start_the_dialog_nor_disconnect(meta_sandbox, bob):
    client = browser(bob)
    for response in (client.get("/crm/auth/meta/url"), client.post("/crm/auth/meta/disconnect", {}, format="json")):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
    assert OAuthState.objects.count() == 0


def test_anonymous_callers_get_401_from_the_url_endpoint(meta_sandbox):
    response = APIClient().get("/crm/auth/meta/url")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_a_state_is_refused_once_its_user_is_no_longer_a_manager(meta_sandbox, alice, acme):
    client = browser(alice)
    callback = through_dialog(meta_sandbox, start_dialog(client)["auth_url"])
    alice.memberships.update(role="marketing")

    assert client.get(callback)["Location"] == "/hub/marketing?meta_error=invalid_state"
    assert_nothing_stored(acme)


def test_disconnect_forgets_the_token_and_page_tokens_and_keeps_the_ad_accounts_and_assets(meta_sandbox, alice, acme):
    client = browser(alice)
    client.get(through_dialog(meta_sandbox, start_dialog(client)["auth_url"]))
    AdAccount.objects.create(account=acme, meta_ad_account_id="act_300001", name="Acme - Leads AR", currency="ARS")
    page = MetaPage(account=acme, meta_page_id="1500001", name="Acme Ventas", subscribed_at=timezone.now())
    page.set_page_token("EAAsandboxPageToken1500001")
    page.save()

    response = client.post("/crm/auth/meta/disconnect", {}, format="json")

    assert response.status_code == 200
    assert response.json()["data"] == {"disconnected": True}
    connection = MetaConnection.objects.get(account=acme)
    assert (connection.status, connection.token_ciphertext, connection.scopes) == ("disconnected", "", [])
    assert AdAccount.objects.filter(account=acme).count() == 1
    page.refresh_from_db()
    assert (page.meta_page_id, page.page_token_ciphertext, page.is_subscribed) == ("1500001", "", True)
    event = SystemEvent.objects.get(action="meta.disconnect")
    assert (event.account, event.actor) == (acme, alice)


def test_the_callback_is_rate_limited_per_caller_and_still_redirects(meta_sandbox, alice, settings):
    settings.API_ANON_RATE_LIMIT = "2/m"
    client = APIClient()
    answers = [client.get("/crm/auth/meta/callback?code=x&state=y")["Location"] for _ in range(3)]
    assert answers == ["/hub/marketing?meta_error=invalid_state"] * 2 + ["/hub/marketing?meta_error=rate_limited"]


def test_no_log_line_carries_a_token_or_the_app_secret(meta_sandbox, alice, acme, caplog):
    caplog.set_level(logging.DEBUG)
    client = browser(alice)
    client.get(through_dialog(meta_sandbox, start_dialog(client)["auth_url"]))
    connection = MetaConnection.objects.get(account=acme)
    meta_sandbox.expire_token()
    failing = client.get("/crm/marketing/meta-accounts")
    assert failing.status_code == 503

    issued = [t for t in meta_sandbox.state.tokens if t.startswith("EAAsbx")]
    assert connection.get_token() in issued and len(issued) == 2  # the short and the long token
    logged = "\n".join(r.getMessage() + " " + str(r.args) for r in caplog.records)
    assert caplog.records
    for secret in [*issued, "sandbox-secret"]:
        assert secret not in logged


def test_a_user_with_two_accounts_connects_the_one_chosen_with_x_account(meta_sandbox, acme, globex):
    carol = make_user("carol", acme, "admin")
    carol.memberships.create(account=globex, role="ceo")
    client = browser(carol)
    assert client.get("/crm/auth/meta/url").status_code == 400
    data = client.get("/crm/auth/meta/url", HTTP_X_ACCOUNT="globex").json()["data"]

    response = client.get(through_dialog(meta_sandbox, data["auth_url"]))

    assert response["Location"] == "/hub/marketing?meta=connected"
    assert MetaConnection.objects.filter(account=globex, status="connected").exists()
    assert not MetaConnection.objects.filter(account=acme).exists()


@pytest.mark.parametrize("hub_url", ["https://hub.example.com/marketing?tab=meta"])
def test_the_callback_keeps_the_query_of_a_configured_hub_url(meta_sandbox, alice, settings, hub_url):
    settings.HUB_MARKETING_URL = hub_url
    response = browser(alice).get("/crm/auth/meta/callback?state=nope&code=x")
    assert response["Location"] == "https://hub.example.com/marketing?tab=meta&meta_error=invalid_state"


def test_admin_shows_the_connection_read_only_per_account_and_never_the_token(meta_sandbox, alice, acme, mallory):
    from django.contrib.auth.models import Permission

    client = browser(alice)
    client.get(through_dialog(meta_sandbox, start_dialog(client)["auth_url"]))
    connection = MetaConnection.objects.get(account=acme)
    view = Permission.objects.get(codename="view_metaconnection")
    for user in (alice, mallory):
        user.user_permissions.add(view)

    listing = client.get("/admin/meta_oauth/metaconnection/")
    detail = client.get(f"/admin/meta_oauth/metaconnection/{connection.pk}/change/")

    assert listing.status_code == 200 and detail.status_code == 200
    for page in (listing.content.decode(), detail.content.decode()):
        assert "Ana Gerente" in page
        assert connection.get_token() not in page and connection.token_ciphertext not in page
        assert "token_ciphertext" not in page and "Token ciphertext" not in page
    assert 'name="_save"' not in detail.content.decode()
    mallory_client = browser(mallory)
    assert "Ana Gerente" not in mallory_client.get("/admin/meta_oauth/metaconnection/").content.decode()
    assert mallory_client.get(f"/admin/meta_oauth/metaconnection/{connection.pk}/change/").status_code == 302
