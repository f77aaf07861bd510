"""No URL a user (or a webhook) supplies is ever fetched, and no redirect parameter sends a browser
off-site.

Every URL-ish value below points at two loopback listeners: the Meta sandbox (a fetch would show in
its request log under /ssrf-canary/...) and a canary server that records any connection. After the
values went through every write endpoint, admin form and webhook that takes them, and the work they
queue ran (events, webhook handlers, a send pass, a template sync), neither saw a request for them.
"""
from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from automation.engine.passes import run_pass
from automation.services.templates import sync_templates
from crm_marketing.graph import GraphClient
from crm_marketing.models import Lead
from marketing.services.attribution import backfill_form_leads
from crm_marketing.sandbox.webhooks import ctwa_message_payload, leadgen_payload, plain_message_payload
from meta_oauth.services import client_for_account
from tests.factories import connect_meta, make_lead
from tests.fixtures.automation import _no_second_guard  # noqa: F401
from tests.fixtures.catalog import FOLLOW_UP_VARIABLES, make_rule, make_template
from tests.fixtures.webhooks import post_signed

pytestmark = pytest.mark.django_db
EVIL = ["https://evil.example/", "//evil.example/", "/\\evil.example/", "\\\\evil.example", "https:evil.example",
        "http://testserver@evil.example/", "https://evil.example/hub/", " //evil.example/", "javascript:alert(1)"]


class Canary:
    """A loopback HTTP listener that records every request it gets."""

    def __init__(self) -> None:
        hits = self.hits = []

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                hits.append(f"{self.command} {self.path}")
                self.send_response(204)
                self.end_headers()

            do_GET = do_POST = do_HEAD = do_PUT = _any

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, field: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/ssrf-canary/{field}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def canary():
    listener = Canary()
    yield listener
    listener.stop()


@pytest.fixture
def urls(canary, meta_sandbox):
    """For a field name, a URL on the canary and one on the sandbox's host, alternately."""
    def make(field: str, *, on_sandbox: bool = False) -> str:
        return f"{meta_sandbox.base_url}/ssrf-canary/{field}" if on_sandbox else canary.url(field)
    return make


def assert_nothing_fetched(canary, sandbox) -> None:
    assert canary.hits == []
    assert [f"{r.method} {r.path}" for r in sandbox.requests if "canary" in r.path or "canary" in json.dumps(r.query)] == []


def run_queued_work() -> None:
    run_pass(budget_seconds=5)


def test_no_url_given_to_the_api_is_fetched(alice_api, acme, meta_sandbox, canary, urls, django_capture_on_commit_callbacks):
    connect_meta(acme, meta_sandbox)
    template = make_template(acme)
    make_rule(acme, template, name="Welcome")
    bodies = {
        "lead": {"first_name": urls("first_name"), "phone": "+5491155550001", "email": "ana@example.com",
                 "meta_ad_headline": urls("headline"), "meta_ad_body": urls("body", on_sandbox=True), "ctwa_clid": urls("clid"),
                 "external_ids": {"website": urls("website"), "photo_url": urls("photo", on_sandbox=True),
                                  "meta_ctwa_source_url": urls("source_url")}},
    }
    with django_capture_on_commit_callbacks(execute=True):
        lead = alice_api.post("/crm/leads", bodies["lead"], format="json")
        lead_id = lead.json()["data"]["id"]
        answers = [
            lead.status_code,
            alice_api.patch(f"/crm/leads/{lead_id}", {"meta_ad_body": urls("patched", on_sandbox=True)}, format="json").status_code,
            alice_api.post("/crm/opportunities", {"lead": lead_id, "title": urls("title")}, format="json").status_code,
            alice_api.post("/crm/marketing/connect", {"account_id": urls("account", on_sandbox=True)}, format="json").status_code,
            alice_api.post("/crm/marketing/whatsapp-channels", {"phone_number_id": urls("phone", on_sandbox=True)}, format="json").status_code,
            alice_api.post("/crm/marketing/meta-pages", {"page_id": urls("page", on_sandbox=True)}, format="json").status_code,
            alice_api.get("/crm/marketing/meta-accounts", {"portfolio_id": urls("portfolio", on_sandbox=True)}).status_code,
            alice_api.get(f"/crm/marketing/campaigns/{quote(urls('campaign', on_sandbox=True), safe='')}").status_code,
            alice_api.get("/crm/marketing/stats/timeseries", {"campaign_id": urls("series", on_sandbox=True)}).status_code,
            alice_api.post("/crm/marketing/automation/rules", {
                "name": urls("rule"), "trigger_type": "lead_created", "conditions": {"lead_sources": ["meta_ctwa"]},
                "steps": [{"order": 1, "delay_minutes": 0, "template_id": template.pk, "variables": FOLLOW_UP_VARIABLES}]},
                format="json").status_code,
        ]
    run_queued_work()

    assert answers == [201, 200, 201, 400, 400, 400, 400, 404, 400, 201]
    assert len(meta_sandbox.sent_messages) == 1  # the welcome went out (with the text as text), and nothing was fetched
    assert_nothing_fetched(canary, meta_sandbox)


def test_no_url_in_a_webhook_is_fetched(client, acme, meta_sandbox, canary, urls, django_capture_on_commit_callbacks):
    connect_meta(acme, meta_sandbox)
    ctwa = ctwa_message_payload("5491155550002", "Lucas", "700001", urls("headline"), urls("body"), "ARAkClid",
                                source_url=urls("source_url"))
    ad_id_url = ctwa_message_payload("5491155550003", "Eva", urls("source_id", on_sandbox=True), "Plan", "Hola", "ARAkOther")
    referral = ctwa["entry"][0]["changes"][0]["value"]["messages"][0]["referral"]
    referral.update(image_url=urls("image_url"), video_url=urls("video_url", on_sandbox=True), thumbnail_url=urls("thumb"))
    image = plain_message_payload("5491155550002", "Lucas", "foto")
    image["entry"][0]["changes"][0]["value"]["messages"][0].update(
        type="image", image={"id": "55501", "mime_type": "image/jpeg", "link": urls("image_link", on_sandbox=True)})
    deliveries = [
        ctwa,
        ad_id_url,
        image,
        leadgen_payload(urls("leadgen_id", on_sandbox=True), "900001", "700001"),
        leadgen_payload("800001", urls("form_id", on_sandbox=True), urls("ad_id", on_sandbox=True)),
        leadgen_payload(f"../../ssrf-canary/leadgen?x=", "900001", "700001"),
    ]

    with django_capture_on_commit_callbacks(execute=True):
        answers = [post_signed(client, payload).status_code for payload in deliveries]

    assert answers == [200] * len(deliveries)
    assert Lead.objects.get(phone="+5491155550002").meta_ad_id == "700001"  # the CTWA message still made its lead
    assert_nothing_fetched(canary, meta_sandbox)


def inline_management(admin: Client, url: str) -> dict[str, str]:
    """The management fields of the page's inline formsets, with no inline row posted."""
    data = {}
    for inline in admin.get(url).context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({management.add_prefix(name): str(management.initial.get(name, 0)) for name in management.fields})
        data[management.add_prefix("TOTAL_FORMS")] = str(management.initial.get("INITIAL_FORMS", 0))
    return data


def test_no_url_in_an_admin_form_is_fetched(alice, acme, meta_sandbox, canary, urls):
    connect_meta(acme, meta_sandbox)
    alice.is_superuser = True
    alice.save()
    admin = Client()
    admin.force_login(alice)
    lead = make_lead(acme)

    added = admin.post("/admin/crm_marketing/lead/add/", {**inline_management(admin, "/admin/crm_marketing/lead/add/"),
        "account": acme.pk, "first_name": urls("first_name"), "phone": "+5491199990000", "status": "new", "lead_source": "meta_ctwa",
        "meta_ad_id": "700001", "meta_ad_headline": urls("headline", on_sandbox=True),
        "external_ids": json.dumps({"website": urls("website"), "avatar": urls("avatar", on_sandbox=True)}),
        "created_at_0": "2026-01-01", "created_at_1": "10:00:00"})
    changed = admin.post(f"/admin/crm_marketing/lead/{lead.pk}/change/", {
        **inline_management(admin, f"/admin/crm_marketing/lead/{lead.pk}/change/"),
        "account": acme.pk, "first_name": "Lead", "phone": lead.phone, "status": "new", "lead_source": "manual",
        "meta_ad_body": urls("ad_body"), "external_ids": json.dumps({"link": urls("link", on_sandbox=True)}),
        "created_at_0": "2026-01-01", "created_at_1": "10:00:00"})

    assert (added.status_code, changed.status_code) == (302, 302), (added.context and added.context["adminform"].form.errors,
                                                                      changed.context and changed.context["adminform"].form.errors)
    assert Lead.objects.filter(phone="+5491199990000").exists()
    assert_nothing_fetched(canary, meta_sandbox)


def test_urls_in_templates_meta_sends_are_stored_never_fetched(acme, meta_sandbox, canary, urls):
    connect_meta(acme, meta_sandbox)
    meta_sandbox.add_template("promo_con_imagen", components=[
        {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": [urls("header_handle"), urls("handle", on_sandbox=True)]}},
        {"type": "BODY", "text": "Hola {{1}}", "example": {"body_text": [["Ana"]]}},
        {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Ver", "url": urls("button") + "/{{1}}"}]}])

    sync_templates(acme, client=client_for_account(acme))

    assert "promo_con_imagen" in acme_template_names(acme)
    assert_nothing_fetched(canary, meta_sandbox)


def acme_template_names(acme) -> list[str]:
    from automation.models import MessageTemplate

    return list(MessageTemplate.objects.filter(account=acme).values_list("name", flat=True))


# -- redirect parameters -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", EVIL)
def test_sign_in_never_redirects_off_site_whatever_next_says(alice, acme, target):
    answers = {}
    for login_url in ("/accounts/login/", "/admin/login/"):
        client = Client()
        response = client.post(f"{login_url}?next={quote(target, safe='')}", {"username": "alice", "password": "pw-alice",
                                                                              "next": target})
        answers[login_url] = (response.status_code, response["Location"])
    alice_browser = Client()
    alice_browser.force_login(alice)
    logout = alice_browser.post(f"/accounts/logout/?next={quote(target, safe='')}", {"next": target})

    assert answers == {"/accounts/login/": (302, "/hub/"), "/admin/login/": (302, "/hub/")}
    assert (logout.status_code, logout["Location"]) == (302, "/accounts/login/")


@pytest.mark.parametrize("target", EVIL)
def test_the_meta_oauth_flow_takes_no_redirect_from_the_request(alice, acme, meta_sandbox, target):
    from tests.test_meta_oauth import browser, start_dialog, through_dialog

    client = browser(alice)
    evil = quote(target, safe="")
    issued = client.get(f"/crm/auth/meta/url?next={evil}&redirect_uri={evil}", HTTP_X_FORWARDED_HOST="evil.example").json()["data"]
    callback = through_dialog(meta_sandbox, issued["auth_url"])

    landing = client.get(f"{callback}&next={evil}&redirect_uri={evil}")
    refused = client.get(f"/crm/auth/meta/callback?state=forged&code=x&next={evil}")

    assert parse_qs(urlsplit(issued["auth_url"]).query)["redirect_uri"] == ["http://testserver/crm/auth/meta/callback"]
    assert landing["Location"] == "/hub/marketing?meta=connected"
    assert refused["Location"] == "/hub/marketing?meta_error=invalid_state"


def test_a_forged_host_header_cannot_steer_the_oauth_redirect_uri(alice, acme, meta_sandbox):
    from tests.test_meta_oauth import browser

    response = browser(alice).get("/crm/auth/meta/url", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert "evil.example" not in response.content.decode()


def test_a_form_id_typed_on_a_lead_never_becomes_a_graph_path(alice_api, acme, meta_sandbox, canary):
    connect_meta(acme, meta_sandbox)
    port = canary.server.server_address[1]
    typed = [f"http://127.0.0.1:{port}/c", "../../ssrf-canary/f", "900001/../../c"]
    answers = [alice_api.post("/crm/leads", {"first_name": "Typed", "email": f"t{n}@example.com", "meta_form_id": form_id},
                              format="json").status_code for n, form_id in enumerate(typed)]
    make_lead(acme, meta_form_id="900001")

    result = backfill_form_leads(acme, client=client_for_account(acme), since=timezone.now() - timedelta(days=30))

    assert answers == [201, 201, 201]
    assert result.forms == 1  # the real form only
    assert [r.path for r in meta_sandbox.requests] == ["/900001/leads"]
    assert_nothing_fetched(canary, meta_sandbox)


@pytest.mark.parametrize("path", ["http://127.0.0.1:9/ssrf-canary", "https://graph.facebook.com/v26.0/me", "../../ssrf-canary",
                                  "me/../../x", "me?fields=access_token", "me#x", "me\\x", "me/%2e%2e/x", "//evil.example/x"])
def test_the_graph_client_refuses_a_path_that_is_not_a_graph_path(meta_sandbox, path):
    client = GraphClient("EAAsbxLongNotUsed", base_url=meta_sandbox.base_url)

    with pytest.raises(ValueError, match="not a Graph path"):
        client.get(path)
    with pytest.raises(ValueError, match="not a Graph path"):
        client.post(path)
    assert meta_sandbox.requests == []
