"""Automation is written by ceo and admin only: maria (marketing) and bob (a seller) are refused every
automation write, in the API (rules POST/PATCH/DELETE, the bulk POST, the template sync) and in the
admin (add, change, delete, bulk actions and the sync button of every automation model), with
nothing changed, nothing queued and nothing asked of Meta. Every request is one alice's role makes work.
"""
from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.test import APIClient

from automation.models import AutomationRule, MessageSend, MessageTemplate, RuleStep
from crm_marketing.audit import SystemEvent
from tests.factories import api_client_for, connect_meta, make_user
from tests.fixtures.catalog import FOLLOW_UP_VARIABLES
from tests.test_tenant_isolation import acme_dataset, api_routes, view_class

pytestmark = pytest.mark.django_db
UNSAFE = {"post", "put", "patch", "delete"}
# Reads that happen to be POSTs (they render, they write nothing): marketing may use them, sellers may not.
READ_POSTS = {"crm/marketing/automation/rules/(?P<pk>[0-9]{1,18})/preview/?"}


@pytest.fixture
def maria(acme):
    return make_user("maria", acme, "marketing", is_staff=True)


@pytest.fixture
def dataset(acme, meta_sandbox):
    connect_meta(acme, meta_sandbox, whatsapp=False, ad_account=None)
    rows = acme_dataset(acme)
    rows["messagetemplate"].components = [{"type": "BODY", "text": "Hola {{1}}"}]
    rows["messagetemplate"].save()
    return rows


def automation_state() -> dict:
    """Everything an automation write could change, queue or record."""
    return {
        "rules": list(AutomationRule.objects.order_by("pk").values()),
        "steps": list(RuleStep.objects.order_by("pk").values()),
        "templates": list(MessageTemplate.objects.order_by("pk").values()),
        "sends": list(MessageSend.objects.order_by("pk").values("pk", "status")),
        "audit": SystemEvent.objects.count(),
    }


def api_writes(rows) -> dict[str, tuple[str, str, dict | None]]:
    rule, template = rows["automationrule"], rows["messagetemplate"]
    new_rule = {"name": "Sneaky", "trigger_type": "opportunity_won", "steps": [{"template_id": template.pk, "variables": {"1": "lead.first_name"}}]}
    return {
        "create a rule": ("post", "/crm/marketing/automation/rules", new_rule),
        "create and update rules in bulk": ("post", "/crm/marketing/automation/rules",
                                            {"rules": [new_rule, {"id": rule.pk, "name": "Hijacked"}]}),
        "change a rule": ("patch", f"/crm/marketing/automation/rules/{rule.pk}", {"name": "Hijacked", "is_active": False}),
        "delete a rule": ("delete", f"/crm/marketing/automation/rules/{rule.pk}", None),
        "sync the templates": ("post", "/crm/marketing/hsm/templates/sync", None),
    }


MANAGER_ANSWERS = {"create a rule": 201, "create and update rules in bulk": 200, "change a rule": 200, "delete a rule": 204,
                   "sync the templates": 202}


def test_the_api_writes_below_are_every_automation_write_route():
    routes = set()
    for route, pattern in api_routes():
        cls = view_class(pattern)
        if cls is None or not cls.__module__.startswith("automation.") or route in READ_POSTS:
            continue
        actions = getattr(pattern.callback, "actions", None)
        methods = set(actions) if actions else {m for m in cls.http_method_names if hasattr(cls, m)}
        routes |= {(m, route) for m in methods & UNSAFE}

    rules, rule = "crm/marketing/automation/rules/?", "crm/marketing/automation/rules/(?P<pk>[0-9]{1,18})/?"
    assert routes == {("post", rules), ("patch", rule), ("delete", rule), ("post", "crm/marketing/hsm/templates/sync")}


def test_alice_makes_each_of_these_writes_work(alice, dataset, django_capture_on_commit_callbacks):
    answers = {}
    for name, (method, url, body) in api_writes(dataset).items():
        with django_capture_on_commit_callbacks(execute=True):
            answers[name] = getattr(api_client_for(alice), method)(url, body, format="json").status_code
        if name == "create a rule":
            AutomationRule.objects.filter(name="Sneaky").delete()  # the bulk create below makes it again

    assert answers == MANAGER_ANSWERS


@pytest.mark.parametrize("who", ["maria", "bob"])
def test_marketing_and_sellers_are_refused_every_automation_write_in_the_api(who, maria, bob, dataset, meta_sandbox,
                                                                            django_capture_on_commit_callbacks):
    client: APIClient = api_client_for({"maria": maria, "bob": bob}[who])
    before = automation_state()

    answers = {}
    with django_capture_on_commit_callbacks(execute=True) as queued:
        for name, (method, url, body) in api_writes(dataset).items():
            response = getattr(client, method)(url, body, format="json")
            answers[name] = (response.status_code, response.json()["error"]["code"])

    assert answers == {name: (403, "permission_denied") for name in MANAGER_ANSWERS}
    assert automation_state() == before
    assert (queued, meta_sandbox.requests) == ([], [])


def test_a_seller_may_not_even_preview_a_rule_but_marketing_may(maria, bob, dataset):
    url = f"/crm/marketing/automation/rules/{dataset['automationrule'].pk}/preview"
    body = {"lead_id": dataset["lead"].pk}

    answers = [api_client_for(user).post(url, body, format="json").status_code for user in (maria, bob)]

    assert answers == [200, 403]


# -- the admin ------------------------------------------------------------------------------------------------------
def automation_admins():
    return {model: model_admin for model, model_admin in admin.site._registry.items() if model._meta.app_label == "automation"}


def admin_browser(user) -> Client:
    """Staff with every Django permission on automation's models: what stops them must be their role."""
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="automation"))
    client = Client()
    client.force_login(user)
    return client


def rule_form(rows) -> dict:
    return {"account": rows["automationrule"].account_id, "name": "Sneaky", "trigger_type": "opportunity_won", "conditions": "{}",
            "is_active": "on", "max_sends_per_lead_per_day": "3", "steps-TOTAL_FORMS": "1", "steps-INITIAL_FORMS": "0",
            "steps-MIN_NUM_FORMS": "0", "steps-MAX_NUM_FORMS": "1000", "steps-0-order": "1", "steps-0-delay_minutes": "0",
            "steps-0-template": rows["messagetemplate"].pk, "steps-0-variables": '{"1": "lead.first_name"}'}


def admin_writes(rows) -> list[tuple[str, str, dict]]:
    """(what, url, form) for every write of every automation model's admin page, and the sync button."""
    writes = []
    for model in automation_admins():
        base = f"/admin/automation/{model._meta.model_name}/"
        obj = rows[model._meta.model_name]
        form = rule_form(rows) if model is AutomationRule else {}
        writes += [
            (f"add a {model._meta.verbose_name}", f"{base}add/", form),
            (f"change a {model._meta.verbose_name}", f"{base}{obj.pk}/change/", {**form, "name": "Hijacked"}),
            (f"delete a {model._meta.verbose_name}", f"{base}{obj.pk}/delete/", {"post": "yes"}),
            (f"bulk-delete {model._meta.verbose_name_plural}", base, {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"}),
        ]
    writes += [("the sync button", "/admin/automation/messagetemplate/sync/", {}),
               ("the sync action", "/admin/automation/messagetemplate/",
                {"action": "sync_templates_now", "_selected_action": [rows["messagetemplate"].pk]})]
    return writes


def test_the_admin_walk_covers_every_automation_model():
    assert {model.__name__ for model in automation_admins()} == {"AutomationRule", "MessageTemplate", "MessageSend"}


@pytest.mark.parametrize("who", ["maria", "bob"])
def test_marketing_and_sellers_are_refused_every_automation_write_in_the_admin(who, maria, bob, dataset, meta_sandbox,
                                                                              django_capture_on_commit_callbacks):
    client = admin_browser({"maria": maria, "bob": bob}[who])
    before = automation_state()

    with django_capture_on_commit_callbacks(execute=True) as queued:
        answers = {what: client.post(url, form).status_code for what, url, form in admin_writes(dataset)}
        add_pages = {model._meta.model_name: client.get(f"/admin/automation/{model._meta.model_name}/add/").status_code
                     for model in automation_admins()}

    refused = {what: status for what, status in answers.items() if status == 403}
    # A bulk action the user may not run is not offered: Django answers the list again with "No action
    # selected" (200, or 403 for bob, who may not see the list) and runs nothing; the state check proves it.
    assert set(answers) - set(refused) <= {w for w in answers if w.startswith(("bulk-delete", "the sync"))}
    assert add_pages == {name: 403 for name in add_pages}
    assert automation_state() == before
    assert (queued, meta_sandbox.requests) == ([], [])


def test_alice_can_make_the_same_admin_writes(alice, dataset, meta_sandbox, django_capture_on_commit_callbacks):
    client = admin_browser(alice)
    writes = {what: (url, form) for what, url, form in admin_writes(dataset)}

    with django_capture_on_commit_callbacks(execute=True):
        added = client.post(*writes["add a automation rule"])
        synced = client.post(*writes["the sync button"])

    assert (added.status_code, synced.status_code) == (302, 302)
    assert AutomationRule.objects.filter(name="Sneaky").exists()
    assert [r.path for r in meta_sandbox.requests if r.path.endswith("/message_templates")] != []
