"""CSRF: a signed-in browser's writes need the CSRF token, on every /crm/ route and in the admin.

How the API authenticates: the hub and the admin use Django's session cookie (HttpOnly, SameSite=Lax),
so every unsafe method they send needs the CSRF token (the ``csrftoken`` cookie echoed in
``X-CSRFToken``, or ``csrfmiddlewaretoken`` in a form). Scripts send ``Authorization: Token <key>``
(``manage.py create_api_token``) and no cookie: a browser never adds that header by itself, so a
forged cross-site request cannot carry it, and token calls are not CSRF-bound.
"""
from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from crm_marketing.audit import SystemEvent
from crm_marketing.models import Lead
from tests.test_tenant_isolation import acme_dataset, acme_snapshot, api_routes, fill

pytestmark = pytest.mark.django_db
UNSAFE = ("post", "put", "patch", "delete")
# Not CSRF-bound on purpose: Meta's webhooks carry a signature instead (tests/test_security_webhooks.py),
# and the catch-all answers the JSON 404 to any method and writes nothing (tests/test_auth_and_limits.py).
NOT_SESSION_WRITES = {"crm/"}
CSRF_REFUSAL = {"success": False, "error": {"code": "csrf_failed", "fields": {}}}


def browser(user, *, csrf_token: bool) -> Client:
    """A signed-in browser that checks CSRF like production; with ``csrf_token`` it also holds the
    token the hub reads from the ``csrftoken`` cookie and sends back in ``X-CSRFToken``."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    if csrf_token:
        client.get("/accounts/login/")  # any page with a form sets the cookie
        client.defaults["HTTP_X_CSRFTOKEN"] = client.cookies["csrftoken"].value
    return client


def without_message(body: dict) -> dict:
    error = dict(body.get("error") or {})
    error.pop("message", None)
    return {**body, "error": error}


def json_or_type(response):
    """The JSON body without its message, or the content type of a body that is not JSON."""
    if response["Content-Type"] != "application/json":
        return response["Content-Type"]
    return without_message(response.json())


def crm_write_urls(rows) -> list[str]:
    urls = []
    for route, pattern in api_routes():
        if route in NOT_SESSION_WRITES or "(?P<format>" in route:
            continue
        urls.append(fill(route, rows, pattern))
    return urls


def test_every_unsafe_method_on_every_crm_route_without_the_csrf_token_is_a_json_403_and_writes_nothing(alice, acme):
    rows = acme_dataset(acme)
    before, events_before = acme_snapshot(acme), SystemEvent.objects.count()
    client = browser(alice, csrf_token=False)
    refused = {}

    for url in crm_write_urls(rows):
        for method in UNSAFE:
            response = getattr(client, method)(url, {"first_name": "Forged", "name": "Forged"}, content_type="application/json")
            refused[f"{method.upper()} {url}"] = (response.status_code, json_or_type(response))

    assert refused == {call: (403, CSRF_REFUSAL) for call in refused}
    assert "POST /crm/leads/" in refused and "POST /crm/auth/meta/callback" in refused and len(refused) > 100
    assert acme_snapshot(acme) == before and SystemEvent.objects.count() == events_before


def test_the_csrf_refusal_says_what_is_missing(alice, acme):
    no_cookie = browser(alice, csrf_token=False)
    cookie_only = browser(alice, csrf_token=True)
    del cookie_only.defaults["HTTP_X_CSRFTOKEN"]

    answers = [client.post("/crm/leads", {"first_name": "Ana", "phone": "+5491155550001"}, content_type="application/json")
               for client in (no_cookie, cookie_only)]

    assert [(r.status_code, r.json()["error"]["message"]) for r in answers] == [
        (403, "CSRF Failed: CSRF cookie not set."), (403, "CSRF Failed: CSRF token missing.")]


def test_a_wrong_csrf_token_is_refused_like_a_missing_one(alice, acme):
    client = browser(alice, csrf_token=True)
    client.defaults["HTTP_X_CSRFTOKEN"] = "x" * 64

    response = client.post("/crm/leads", {"first_name": "Ana", "phone": "+5491155550001"}, content_type="application/json")

    assert (response.status_code, without_message(response.json())) == (403, CSRF_REFUSAL)
    assert Lead.objects.count() == 0


def test_with_the_csrf_token_the_same_session_writes_work(alice, acme):
    rows = acme_dataset(acme)
    client = browser(alice, csrf_token=True)
    lead, opportunity, rule = rows["lead"], rows["opportunity"], rows["automationrule"]

    answers = {
        "create lead": client.post("/crm/leads", {"first_name": "Ana", "phone": "+5491155550001"}, content_type="application/json"),
        "change lead": client.patch(f"/crm/leads/{lead.pk}", {"status": "contacted"}, content_type="application/json"),
        "create opportunity": client.post("/crm/opportunities", {"lead": lead.pk, "title": "Plan"}, content_type="application/json"),
        "change opportunity": client.patch(f"/crm/opportunities/{opportunity.pk}", {"title": "Plan B"}, content_type="application/json"),
        "record sale": client.post("/crm/sales", {"lead": lead.pk, "amount": "10.00"}, content_type="application/json"),
        "rename rule": client.patch(f"/crm/marketing/automation/rules/{rule.pk}", {"name": "Renamed"}, content_type="application/json"),
        "preview rule": client.post(f"/crm/marketing/automation/rules/{rule.pk}/preview", {"lead_id": lead.pk}, content_type="application/json"),
        "delete rule": client.delete(f"/crm/marketing/automation/rules/{rule.pk}"),
        "disconnect meta": client.post("/crm/auth/meta/disconnect", content_type="application/json"),
    }

    assert {name: r.status_code for name, r in answers.items()} == {
        "create lead": 201, "change lead": 200, "create opportunity": 201, "change opportunity": 200, "record sale": 201,
        "rename rule": 200, "preview rule": 200, "delete rule": 204, "disconnect meta": 200}
    lead.refresh_from_db()
    assert lead.status == "contacted" and Lead.objects.filter(phone="+5491155550001").exists()


def test_a_script_with_an_api_token_and_no_cookie_is_not_csrf_bound(alice, acme):
    key = Token.objects.create(user=alice).key
    script = Client(enforce_csrf_checks=True)

    response = script.post("/crm/leads", {"first_name": "Ana", "phone": "+5491155550001"}, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Token {key}")

    assert response.status_code == 201
    assert Lead.objects.get(phone="+5491155550001").first_name == "Ana"


def test_a_session_cookie_with_a_bad_token_header_is_refused_not_taken_as_the_session(alice, acme):
    client = browser(alice, csrf_token=False)

    response = client.post("/crm/leads", {"first_name": "Ana", "phone": "+5491155550001"}, content_type="application/json",
                           HTTP_AUTHORIZATION="Token not-a-real-token")

    assert response.status_code == 401
    assert Lead.objects.count() == 0


# -- the admin and the sign-in pages --------------------------------------------------------------------------------
def admin_forms(acme, rows) -> dict[str, dict]:
    lead = rows["lead"]
    return {
        "/admin/crm_marketing/lead/add/": {"account": acme.pk, "first_name": "Forged", "phone": "+5491199990000", "status": "new",
                                            "lead_source": "manual", "external_ids": "{}", "created_at_0": "2026-01-01",
                                            "created_at_1": "10:00:00"},
        f"/admin/crm_marketing/lead/{lead.pk}/change/": {"account": acme.pk, "first_name": "Forged", "status": "lost",
                                                         "lead_source": "manual", "external_ids": "{}"},
        f"/admin/crm_marketing/lead/{lead.pk}/delete/": {"post": "yes"},
        "/admin/crm_marketing/lead/": {"action": "delete_selected", "_selected_action": [lead.pk], "post": "yes"},
        f"/admin/automation/automationrule/{rows['automationrule'].pk}/delete/": {"post": "yes"},
        "/admin/automation/messagetemplate/sync/": {},
    }


def test_every_admin_write_without_the_csrf_token_is_refused_and_writes_nothing(alice, acme):
    rows = acme_dataset(acme)
    alice.is_superuser = True
    alice.save()
    before = acme_snapshot(acme)
    client = browser(alice, csrf_token=False)

    answers = {url: client.post(url, form).status_code for url, form in admin_forms(acme, rows).items()}

    assert answers == {url: 403 for url in answers}
    assert acme_snapshot(acme) == before


def test_the_admin_accepts_the_same_delete_with_the_csrf_token(alice, acme):
    rows = acme_dataset(acme)
    alice.is_superuser = True
    alice.save()
    client = browser(alice, csrf_token=False)
    page = client.get(f"/admin/automation/automationrule/{rows['automationrule'].pk}/delete/")
    form_token = page.context["csrf_token"]

    response = client.post(f"/admin/automation/automationrule/{rows['automationrule'].pk}/delete/",
                           {"post": "yes", "csrfmiddlewaretoken": form_token})

    assert response.status_code == 302
    assert not type(rows["automationrule"]).objects.filter(pk=rows["automationrule"].pk).exists()


def test_sign_in_and_sign_out_forms_need_the_csrf_token(alice, acme):
    client = Client(enforce_csrf_checks=True)
    forged_login = client.post("/accounts/login/", {"username": "alice", "password": "pw-alice"})
    forged_admin_login = client.post("/admin/login/", {"username": "alice", "password": "pw-alice"})
    signed_in = browser(alice, csrf_token=False)

    forged_logout = signed_in.post("/accounts/logout/")

    assert (forged_login.status_code, forged_admin_login.status_code, forged_logout.status_code) == (403, 403, 403)
    assert "_auth_user_id" not in client.session
    assert signed_in.get("/crm/me").status_code == 200  # still signed in
