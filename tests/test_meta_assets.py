"""/crm/marketing/whatsapp-channels and /crm/marketing/meta-pages: what the token sees, choosing one,
subscribing its webhooks; one account per Meta id; tokens never leave the server."""
from __future__ import annotations

import pytest
from django.test import Client

from crm_marketing.audit import SystemEvent
from crm_marketing.demo import staff_group
from meta_oauth.models import MetaConnection, MetaPage, WhatsAppChannel
from tests.conftest import api_client_for, make_user
from tests.fixtures.webhooks import connect_meta

ACME_VENTAS = {"waba_id": "1200001", "phone_number_id": "1300001", "display_phone_number": "+54 9 11 4000-0000",
               "verified_name": "Acme Ventas", "quality_rating": "GREEN", "messaging_limit_tier": "TIER_1K",
               "throughput_mps": 80}
ACME_SOPORTE = {"waba_id": "1200001", "phone_number_id": "1300002", "display_phone_number": "+54 9 11 4000-0002",
                "verified_name": "Acme Soporte", "quality_rating": "YELLOW", "messaging_limit_tier": "TIER_250",
                "throughput_mps": 80}
ACME_AGENCY = {"waba_id": "1200002", "phone_number_id": "1300003", "display_phone_number": "+1 555-010-0003",
               "verified_name": "Acme Agency", "quality_rating": "UNKNOWN", "messaging_limit_tier": "TIER_UNLIMITED",
               "throughput_mps": 1000}


@pytest.fixture
def connected(acme, meta_sandbox) -> MetaConnection:
    """acme connected to Meta, with no channel or page chosen yet."""
    return connect_meta(acme, meta_sandbox, phone_number_id=None, page_id=None, ad_account=None)


def data_of(response, status: int = 200):
    assert response.status_code == status, response.content
    return response.json()["data"]


def error_of(response) -> tuple[int, str, dict]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["fields"]


def no_token_in(response) -> bool:
    return "EAAsandbox" not in response.content.decode() and "access_token" not in response.content.decode()


# -- WhatsApp channels -----------------------------------------------------------------------------------
def test_alice_lists_every_number_of_every_waba_her_token_sees_none_chosen_yet(connected, alice_api):
    response = alice_api.get("/crm/marketing/whatsapp-channels")

    assert data_of(response) == [dict(c, id=None, is_selected=False) for c in (ACME_VENTAS, ACME_SOPORTE, ACME_AGENCY)]
    assert no_token_in(response)


def test_alice_chooses_a_number_which_is_stored_selected_and_its_waba_subscribed(acme, alice, connected, alice_api, meta_sandbox):
    response = alice_api.post("/crm/marketing/whatsapp-channels", {"phone_number_id": "1300001"}, format="json")

    channel = WhatsAppChannel.objects.get()
    assert data_of(response) == [dict(ACME_VENTAS, id=channel.pk, is_selected=True), dict(ACME_SOPORTE, id=None, is_selected=False),
                                 dict(ACME_AGENCY, id=None, is_selected=False)]
    assert (channel.account, channel.meta_waba_id, channel.is_selected, channel.subscribed_at is not None) == (acme, "1200001", True, True)
    assert [(s["object"], s["id"]) for s in meta_sandbox.subscriptions] == [("waba", "1200001")]
    assert list(SystemEvent.objects.values_list("action", "actor", "target_id", "details")) == [
        ("meta.whatsapp_channel.select", alice.pk, str(channel.pk),
         {"meta_waba_id": "1200001", "meta_phone_number_id": "1300001"})]
    listed = data_of(alice_api.get("/crm/marketing/whatsapp-channels"))
    assert [(c["id"], c["phone_number_id"], c["is_selected"]) for c in listed] == [
        (channel.pk, "1300001", True), (None, "1300002", False), (None, "1300003", False)]


def test_choosing_another_number_unselects_the_first_and_keeps_its_row(acme, connected, alice_api):
    alice_api.post("/crm/marketing/whatsapp-channels", {"phone_number_id": "1300001"}, format="json")

    response = alice_api.post("/crm/marketing/whatsapp-channels", {"phone_number_id": "1300003"}, format="json")

    first, agency = (WhatsAppChannel.objects.get(meta_phone_number_id=n).pk for n in ("1300001", "1300003"))
    assert [(c["id"], c["phone_number_id"], c["is_selected"]) for c in data_of(response)] == [
        (first, "1300001", False), (None, "1300002", False), (agency, "1300003", True)]
    assert data_of(response)[2] == dict(ACME_AGENCY, id=agency, is_selected=True)
    assert sorted(WhatsAppChannel.objects.values_list("meta_phone_number_id", "is_selected")) == [("1300001", False), ("1300003", True)]


def test_a_number_another_account_has_is_a_409_and_changes_nothing(acme, globex, connected, alice_api, meta_sandbox):
    connect_meta(globex, meta_sandbox, phone_number_id="1300001", page_id=None, ad_account=None)

    response = alice_api.post("/crm/marketing/whatsapp-channels", {"phone_number_id": "1300001"}, format="json")

    assert error_of(response) == (409, "conflict", {})
    assert list(WhatsAppChannel.objects.values_list("account__slug", "meta_phone_number_id")) == [("globex", "1300001")]
    assert meta_sandbox.subscriptions == [] and not SystemEvent.objects.exists()


def test_a_number_the_token_does_not_see_is_a_400_on_the_field(connected, alice_api, meta_sandbox):
    unknown = alice_api.post("/crm/marketing/whatsapp-channels", {"phone_number_id": "1399999"}, format="json")
    malformed = alice_api.post("/crm/marketing/whatsapp-channels", {"phone_number_id": "13000 01"}, format="json")
    extra = alice_api.post("/crm/marketing/whatsapp-channels", {"phone_number_id": "1300001", "account": 2}, format="json")

    assert error_of(unknown) == (400, "validation_error", {"phone_number_id": ["Meta does not show this phone number to the connected user."]})
    assert error_of(malformed)[0:2] == (400, "validation_error") and list(error_of(malformed)[2]) == ["phone_number_id"]
    assert error_of(extra)[2] == {"account": ["Unknown or read-only field."]}
    assert not WhatsAppChannel.objects.exists() and meta_sandbox.subscriptions == []


def test_a_marketing_member_may_list_but_not_choose(acme, connected):
    marketing_api = api_client_for(make_user("marta", acme, "marketing"))

    listed = marketing_api.get("/crm/marketing/whatsapp-channels")
    chosen = marketing_api.post("/crm/marketing/whatsapp-channels", {"phone_number_id": "1300001"}, format="json")
    page = marketing_api.post("/crm/marketing/meta-pages", {"page_id": "1500001"}, format="json")

    assert listed.status_code == 200
    assert (chosen.status_code, page.status_code) == (403, 403)
    assert not WhatsAppChannel.objects.exists() and not MetaPage.objects.exists()


def test_a_seller_may_not_even_list(bob, connected):
    assert api_client_for(bob).get("/crm/marketing/whatsapp-channels").status_code == 403


@pytest.mark.parametrize("url, body", [("/crm/marketing/whatsapp-channels", {"phone_number_id": "1300001"}),
                                       ("/crm/marketing/meta-pages", {"page_id": "1500001"})])
def test_without_a_meta_connection_assets_are_a_503(acme, alice_api, meta_sandbox, url, body):
    assert error_of(alice_api.get(url))[0:2] == (503, "meta_not_connected")
    assert error_of(alice_api.post(url, body, format="json"))[0:2] == (503, "meta_not_connected")
    assert meta_sandbox.requests == []


@pytest.mark.parametrize("url, body", [("/crm/marketing/whatsapp-channels", {"phone_number_id": "1300001"}),
                                       ("/crm/marketing/meta-pages", {"page_id": "1500001"})])
def test_when_meta_is_down_assets_are_a_502_and_nothing_is_stored(connected, alice_api, meta_sandbox, settings, url, body):
    settings.META_INTERACTIVE_MAX_WAIT_SECONDS = 0
    meta_sandbox.fail_next(20, status=500)

    assert error_of(alice_api.get(url))[0:2] == (502, "meta_error")
    assert error_of(alice_api.post(url, body, format="json"))[0:2] == (502, "meta_error")
    assert not WhatsAppChannel.objects.exists() and not MetaPage.objects.exists()


def test_when_the_waba_subscription_fails_the_number_is_not_stored(connected, alice_api, meta_sandbox):
    meta_sandbox.fail_next(1, status=400, code=200, path_contains="/subscribed_apps")

    response = alice_api.post("/crm/marketing/whatsapp-channels", {"phone_number_id": "1300001"}, format="json")

    assert error_of(response)[0:2] == (502, "meta_error")
    assert not WhatsAppChannel.objects.exists()


# -- pages -------------------------------------------------------------------------------------------------------
def test_alice_lists_her_pages_without_their_tokens(connected, alice_api, meta_sandbox):
    response = alice_api.get("/crm/marketing/meta-pages")

    assert data_of(response) == [{"id": None, "page_id": "1500001", "name": "Acme Ventas", "is_subscribed": False},
                                 {"id": None, "page_id": "1500002", "name": "Acme Promos", "is_subscribed": False}]
    assert no_token_in(response)
    assert [r.query.get("fields") for r in meta_sandbox.requests if r.path == "/me/accounts"] == ["id,name"]


def test_alice_subscribes_a_page_with_its_page_token_which_is_stored_encrypted(acme, alice, connected, alice_api, meta_sandbox):
    response = alice_api.post("/crm/marketing/meta-pages", {"page_id": "1500001"}, format="json")

    page = MetaPage.objects.get()
    assert data_of(response) == [{"id": page.pk, "page_id": "1500001", "name": "Acme Ventas", "is_subscribed": True},
                                 {"id": None, "page_id": "1500002", "name": "Acme Promos", "is_subscribed": False}]
    assert no_token_in(response)
    assert page.get_page_token() == "EAAsandboxPageToken1500001"
    assert "EAAsandboxPageToken1500001" not in page.page_token_ciphertext
    [subscribe] = [r for r in meta_sandbox.requests if r.path == "/1500001/subscribed_apps"]
    assert (subscribe.method, subscribe.body, subscribe.headers["Authorization"]) == (
        "POST", {"subscribed_fields": "leadgen"}, "Bearer EAAsandboxPageToken1500001")
    assert [(s["object"], s["id"], s["subscribed_fields"]) for s in meta_sandbox.subscriptions] == [("page", "1500001", ["leadgen"])]
    event = SystemEvent.objects.get()
    assert (event.action, event.actor, event.details) == ("meta.page.subscribe", alice, {"meta_page_id": "1500001", "subscribed_fields": ["leadgen"]})
    assert "EAAsandbox" not in str(event.details)
    listed = data_of(alice_api.get("/crm/marketing/meta-pages"))
    assert listed[0] == {"id": page.pk, "page_id": "1500001", "name": "Acme Ventas", "is_subscribed": True}


def test_a_page_another_account_has_is_a_409(acme, globex, connected, alice_api, meta_sandbox):
    connect_meta(globex, meta_sandbox, phone_number_id=None, page_id="1500002", ad_account=None)

    response = alice_api.post("/crm/marketing/meta-pages", {"page_id": "1500002"}, format="json")

    assert error_of(response) == (409, "conflict", {})
    assert list(MetaPage.objects.values_list("account__slug", "meta_page_id")) == [("globex", "1500002")]
    assert meta_sandbox.subscriptions == []


def test_a_page_the_user_does_not_manage_is_a_400(connected, alice_api):
    response = alice_api.post("/crm/marketing/meta-pages", {"page_id": "1500003"}, format="json")

    assert error_of(response) == (400, "validation_error", {
        "page_id": ["Meta does not show this page (with a page token) to the connected user."]})
    assert not MetaPage.objects.exists()


# -- admin -----------------------------------------------------------------------------------------------------------
def test_the_admin_shows_alice_acmes_channel_and_page_but_never_a_page_token(acme, globex, alice, meta_sandbox):
    connect_meta(acme, meta_sandbox)
    connect_meta(globex, meta_sandbox, phone_number_id="1300002", page_id="1500002", ad_account=None)
    alice.groups.add(staff_group())
    client = Client()
    client.force_login(alice)
    page = MetaPage.objects.get(account=acme)

    channels = client.get("/admin/meta_oauth/whatsappchannel/")
    pages = client.get("/admin/meta_oauth/metapage/")
    detail = client.get(f"/admin/meta_oauth/metapage/{page.pk}/change/")
    theirs = client.get(f"/admin/meta_oauth/metapage/{MetaPage.objects.get(account=globex).pk}/change/")

    assert channels.status_code == 200 and "1300001" in channels.content.decode() and "1300002" not in channels.content.decode()
    assert pages.status_code == 200 and "1500001" in pages.content.decode() and "1500002" not in pages.content.decode()
    assert detail.status_code == 200 and "EAAsandbox" not in detail.content.decode()
    assert page.page_token_ciphertext not in detail.content.decode()
    assert theirs.status_code == 302  # the admin's "not found" redirect for a row out of scope
