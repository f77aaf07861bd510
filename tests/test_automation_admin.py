"""Django admin for automation: rules and their steps validated like the API and saved together, the
WhatsApp-like preview, flags and counters, marketing's read-only view, and the template list's sync action."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from automation.models import AutomationRule, MessageSend, MessageTemplate, RuleStep
from crm_marketing.audit import SystemEvent
from tests.conftest import make_lead, make_user
from tests.fixtures.catalog import FOLLOW_UP_VARIABLES, make_rule, make_template
from tests.fixtures.webhooks import connect_meta

pytestmark = pytest.mark.django_db
RULES = "/admin/automation/automationrule/"
TEMPLATES = "/admin/automation/messagetemplate/"


def with_automation_permissions(user):
    """Every Django permission on automation's models: what stops marketing is its role, not a missing permission."""
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="automation"))
    return user


def admin_client(user) -> Client:
    client = Client()
    client.force_login(with_automation_permissions(user))
    return client


@pytest.fixture
def maria(acme):
    return make_user("maria", acme, "marketing", is_staff=True)


@pytest.fixture
def template(acme):
    return make_template(acme)


def rule_form(account, template=None, *, variables=None, steps=None, rule=None, **fields) -> dict:
    """The POST of the rule's add or change page, with one step (or the given ones)."""
    data = {"account": account.pk, "name": "Welcome", "trigger_type": "lead_created", "conditions": '{"lead_sources": ["meta_lead_ads"]}',
            "is_active": "on", "no_reply_hours": "", "quiet_hours_start": "", "quiet_hours_end": "",
            "max_sends_per_lead_per_day": "3", "exit_on_reply": "on", "exit_on_won": "on"}
    data.update(fields)
    steps = steps if steps is not None else [{"order": "1", "delay_minutes": "0", "template": template.pk,
                                              "variables": json.dumps(FOLLOW_UP_VARIABLES if variables is None else variables)}]
    existing = list(rule.steps.order_by("order")) if rule is not None else []
    data.update({"steps-TOTAL_FORMS": str(len(steps)), "steps-INITIAL_FORMS": str(len(existing)),
                 "steps-MIN_NUM_FORMS": "0", "steps-MAX_NUM_FORMS": "1000"})
    for index, step in enumerate(steps):
        for name, value in step.items():
            data[f"steps-{index}-{name}"] = value
        data[f"steps-{index}-id"] = existing[index].pk if index < len(existing) else ""
        data[f"steps-{index}-rule"] = rule.pk if rule is not None else ""
    return data


def form_errors(response) -> list[str]:
    """Every error the admin page shows: the rule form's and each step form's and the steps' own."""
    assert response.status_code == 200, response.status_code
    context = response.context
    errors = [str(e) for field in context["adminform"].form.errors.values() for e in field]
    for inline in context["inline_admin_formsets"]:
        errors += [str(e) for e in inline.formset.non_form_errors()]
        errors += [str(e) for form_errors in inline.formset.errors for field in form_errors.values() for e in field]
    return errors


# -- saving ---------------------------------------------------------------------------------------------------------
def test_alice_adds_a_rule_with_its_step_in_the_admin(alice, acme, template):
    response = admin_client(alice).post(f"{RULES}add/", rule_form(acme, template))

    assert response.status_code == 302, form_errors(response)
    rule = AutomationRule.objects.get()
    assert (rule.name, rule.account, rule.conditions, rule.created_by) == ("Welcome", acme, {"lead_sources": ["meta_lead_ads"]}, alice)
    assert list(rule.steps.values_list("order", "template__name", "variables")) == [(1, "seguimiento_lead_v1", FOLLOW_UP_VARIABLES)]
    assert SystemEvent.objects.get().action == "automation.rule.created"


def test_a_step_whose_variables_do_not_match_the_template_is_a_form_error_and_saves_nothing(alice, acme, template):
    response = admin_client(alice).post(f"{RULES}add/", rule_form(acme, template, variables={"1": "lead.first_name"}))

    assert form_errors(response) == ["The template has 3 variable(s) (1, 2, 3); the step maps 1, missing ['2', '3']."]
    assert not AutomationRule.objects.exists() and not RuleStep.objects.exists() and not SystemEvent.objects.exists()


def test_an_unapproved_template_is_a_form_error_and_the_rule_keeps_its_steps(alice, acme, template):
    rule = make_rule(acme, template)
    paused = make_template(acme, "pausado", status="PAUSED", meta_template_id="2")

    response = admin_client(alice).post(f"{RULES}{rule.pk}/change/",
                                        rule_form(acme, paused, rule=rule, name="Renamed"))

    assert form_errors(response) == ["Template pausado is PAUSED: only APPROVED templates can be sent."]
    rule.refresh_from_db()
    assert (rule.name, list(rule.steps.values_list("template__name", flat=True))) == ("Welcome", ["seguimiento_lead_v1"])


@pytest.mark.parametrize("field, value", [("conditions", "{not json"), ("variables", "{\"1\": "), ("conditions", '{"stages": ["maybe"]}'),
                                          ("variables", '["lead.first_name"]'), ("variables", '{"1": "lead.password"}'),
                                          ("conditions", '{"lead_sources": ["\\u0000"]}'), ("variables", '{"\\u0000": "lead.first_name"}'),
                                          ("variables", '{"1": ["lead.first_name"]}'), ("variables", '{"1": {"a": 1}}'),
                                          ("conditions", '{"lead_sources": ["\\ud800"]}'), ("variables", '{"1": "\\ud800"}'),
                                          ("conditions", "[" * 5000 + "]" * 5000), ("variables", '{"1": ' + "[" * 40 + "]" * 40 + "}")])
def test_odd_input_is_a_form_error_never_a_500(alice, acme, template, field, value):
    data = rule_form(acme, template)
    data["steps-0-variables" if field == "variables" else field] = value

    response = admin_client(alice).post(f"{RULES}add/", data)

    assert form_errors(response)
    assert not AutomationRule.objects.exists()


def test_a_no_reply_rule_without_hours_is_a_form_error(alice, acme, template):
    response = admin_client(alice).post(f"{RULES}add/", rule_form(acme, template, trigger_type="no_reply"))

    assert form_errors(response) == ["A no_reply rule needs the hours without an answer (1 to 2160)."]


def test_a_second_active_rule_alike_is_a_form_error(alice, acme, template):
    make_rule(acme, template, conditions={"lead_sources": ["meta_lead_ads"]})

    response = admin_client(alice).post(f"{RULES}add/", rule_form(acme, template, name="Twin"))

    assert form_errors(response) == ["Another active rule already has the lead_created trigger with these conditions; "
                                     "deactivate one or change its conditions."]
    assert AutomationRule.objects.count() == 1


def test_alice_swaps_two_steps_orders_in_the_admin(alice, acme, template):
    rule = make_rule(acme, template)
    second = make_template(acme, "segundo", meta_template_id="2", components=[{"type": "BODY", "text": "Sigo acá"}])
    RuleStep.objects.create(account=acme, rule=rule, order=2, delay_minutes=60, template=second, variables={})

    response = admin_client(alice).post(f"{RULES}{rule.pk}/change/", rule_form(acme, rule=rule, steps=[
        {"order": "2", "delay_minutes": "60", "template": template.pk, "variables": json.dumps(FOLLOW_UP_VARIABLES)},
        {"order": "1", "delay_minutes": "0", "template": second.pk, "variables": "{}"}]))

    assert response.status_code == 302, form_errors(response)
    assert list(rule.steps.order_by("order").values_list("order", "template__name")) == [(1, "segundo"), (2, "seguimiento_lead_v1")]


# -- who may edit ------------------------------------------------------------------------------------------------------
def test_a_marketing_member_sees_rules_but_cannot_add_change_or_delete_them(maria, acme, template):
    rule = make_rule(acme, template)
    client = admin_client(maria)

    page = client.get(f"{RULES}{rule.pk}/change/")
    answers = [client.get(f"{RULES}add/").status_code,
               client.post(f"{RULES}add/", rule_form(acme, template, name="Sneaky", is_active="")).status_code,
               client.post(f"{RULES}{rule.pk}/change/", rule_form(acme, template, rule=rule, name="Hacked")).status_code,
               client.post(f"{RULES}{rule.pk}/delete/", {"post": "yes"}).status_code]

    assert page.status_code == 200 and b'name="_save"' not in page.content and b"seguimiento_lead_v1" in page.content
    assert answers == [403, 403, 403, 403]
    rule.refresh_from_db()
    assert (AutomationRule.objects.count(), rule.name, rule.steps.count()) == (1, "Welcome", 1)


def test_mallory_cannot_open_acmes_rule_in_the_admin(mallory, acme, template):
    rule = make_rule(acme, template, name="AcmeOnlyRule")
    client = admin_client(mallory)

    assert client.get(f"{RULES}{rule.pk}/change/").status_code == 302  # the admin's "does not exist" redirect
    assert b"AcmeOnlyRule" not in client.get(RULES).content


# -- preview, counters, flags ------------------------------------------------------------------------------------------
def test_the_change_page_shows_each_step_in_a_whatsapp_bubble_for_the_chosen_lead(alice, acme, template):
    rule = make_rule(acme, template)
    seller = make_user("juan", acme, "seller", first_name="Juan")
    lead = make_lead(acme, first_name="María", meta_ad_headline="Plan Pro", seller=seller)
    make_lead(acme, first_name="Otra")  # newer: the default, so the choice below matters

    page = admin_client(alice).get(f"{RULES}{rule.pk}/change/?preview_lead={lead.pk}")

    html = page.content.decode()
    assert page.status_code == 200
    assert '<div class="wa-header">¡Hola María!</div>' in html
    assert '<div class="wa-body">Gracias por tu interés en Plan Pro. ¿Querés que Juan te llame hoy?</div>' in html
    assert '<div class="wa-footer">Respondé STOP para no recibir más mensajes</div>' in html
    assert '<span class="wa-button">Sí, llamame</span><span class="wa-button">Ahora no</span>' in html
    assert "counters" in html and "sends 0, sent 0, delivered 0, read 0, failed 0, skipped 0" in html


def test_a_preview_lead_of_another_account_is_refused_without_showing_it(alice, acme, globex, template):
    rule = make_rule(acme, template)
    theirs = make_lead(globex, first_name="GlobexLead")

    page = admin_client(alice).get(f"{RULES}{rule.pk}/change/?preview_lead={theirs.pk}")

    html = page.content.decode()
    assert page.status_code == 200
    assert f"No lead {theirs.pk} in Acme." in html and "GlobexLead" not in html
    assert '<div class="wa-header">¡Hola [Lead first name]!</div>' in html


def test_a_flagged_rule_is_marked_in_the_list_and_on_its_page(alice, acme, template):
    rule = make_rule(acme, template, flagged_reason="Template seguimiento_lead_v1 is PAUSED")
    client = admin_client(alice)

    listing = client.get(RULES).content.decode()
    page = client.get(f"{RULES}{rule.pk}/change/")

    assert "&#9888; Template seguimiento_lead_v1 is PAUSED" in listing
    assert [r.name for r in client.get(f"{RULES}?flagged=yes").context["cl"].result_list] == ["Welcome"]
    assert list(client.get(f"{RULES}?flagged=no").context["cl"].result_list) == []
    assert [str(m) for m in page.context["messages"]] == ["This rule needs attention: Template seguimiento_lead_v1 is PAUSED."]


# -- templates ------------------------------------------------------------------------------------------------------------
def test_templates_are_read_only_in_the_admin(alice, acme, template):
    client = admin_client(alice)

    assert client.get(TEMPLATES).status_code == 200
    assert client.get(f"{TEMPLATES}add/").status_code == 403
    page = client.get(f"{TEMPLATES}{template.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content


def test_the_sync_action_fetches_the_accounts_templates(alice, acme, template, meta_sandbox, django_capture_on_commit_callbacks):
    connect_meta(acme, meta_sandbox, ad_account=None)  # with its WhatsApp channel (WABA 1200001)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client(alice).post(TEMPLATES, {"action": "sync_templates_now", "_selected_action": [template.pk]}, follow=True)

    assert [str(m) for m in response.context["messages"]][0].startswith("Acme: template sync queued (task ")
    assert sorted(MessageTemplate.objects.values_list("name", "status")) == sorted(
        (t["name"], t["status"]) for t in meta_sandbox.state.templates)
    assert SystemEvent.objects.get().action == "automation.templates.sync"


def test_a_marketing_member_cannot_start_a_sync_from_the_admin(maria, acme, template, meta_sandbox):
    connect_meta(acme, meta_sandbox, ad_account=None)  # with its WhatsApp channel (WABA 1200001)

    response = admin_client(maria).post(TEMPLATES, {"action": "sync_templates_now", "_selected_action": [template.pk]}, follow=True)

    assert [str(m) for m in response.context["messages"]] == ["Acme: only ceo and admin members sync templates."]
    assert not SystemEvent.objects.exists()


def test_the_sync_button_works_before_any_template_exists(alice, acme, meta_sandbox, django_capture_on_commit_callbacks):
    connect_meta(acme, meta_sandbox, ad_account=None)  # with its WhatsApp channel (WABA 1200001)
    client = admin_client(alice)

    listing = client.get(TEMPLATES).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{TEMPLATES}sync/", follow=True)

    assert "Sync templates now</button>" in listing
    assert [str(m) for m in response.context["messages"]][0].startswith("Acme: template sync queued (task ")
    assert MessageTemplate.objects.filter(account=acme).count() == len(meta_sandbox.state.templates)


def test_a_marketing_member_gets_no_sync_button_and_its_post_syncs_nothing(maria, acme, meta_sandbox):
    connect_meta(acme, meta_sandbox, ad_account=None)  # with its WhatsApp channel (WABA 1200001)
    client = admin_client(maria)

    listing = client.get(TEMPLATES).content.decode()
    response = client.post(f"{TEMPLATES}sync/", follow=True)

    assert "Sync templates now</button>" not in listing
    assert [str(m) for m in response.context["messages"]] == ["Only ceo and admin members sync templates."]
    assert not MessageTemplate.objects.exists() and not SystemEvent.objects.exists()


def test_the_send_log_says_why_a_send_failed_and_when_it_went_out_on_the_accounts_clock(alice, acme):
    assert acme.timezone == "America/Argentina/Buenos_Aires"
    sent_at = dt.datetime(2026, 11, 29, 23, 30, tzinfo=dt.timezone.utc)
    MessageSend.objects.create(account=acme, lead=make_lead(acme, first_name="Lucía"), trigger_type="lead_created",
                               trigger_key="event:1", rule_name="Welcome", template_name="seguimiento_lead_v1",
                               status="failed", error_code=131026, error_title="Message undeliverable",
                               due_at=sent_at, sent_at=sent_at)

    page = admin_client(alice).get("/admin/automation/messagesend/")

    assert page.status_code == 200
    text = page.content.decode()
    assert "131026 Message undeliverable" in text
    assert "Nov. 29, 2026, 8:30 p.m. -03" in text  # 23:30 UTC is 20:30 in Buenos Aires
