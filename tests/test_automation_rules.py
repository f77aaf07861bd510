"""/crm/marketing/automation/rules: the rules API (ceo/admin write, marketing reads, sellers 403),
its validation, the original client's bulk POST, 409 on duplicate active rules, and the preview."""
from __future__ import annotations

import pytest

from automation.models import AutomationRule, MessageSend, RuleStep
from crm_marketing.audit import SystemEvent
from tests.conftest import api_client_for, make_lead, make_opportunity, make_user
from tests.fixtures.catalog import FOLLOW_UP_VARIABLES, make_rule, make_template

pytestmark = pytest.mark.django_db
URL = "/crm/marketing/automation/rules"
NO_COUNTERS = {"sends": 0, "sent": 0, "delivered": 0, "read": 0, "failed": 0, "skipped": 0}


@pytest.fixture
def template(acme):
    return make_template(acme)


def welcome(template, **overrides) -> dict:
    body = {"name": "Welcome", "trigger_type": "lead_created", "conditions": {"lead_sources": ["meta_lead_ads"]},
            "steps": [{"delay_minutes": 0, "template_id": template.pk, "variables": FOLLOW_UP_VARIABLES}]}
    body.update(overrides)
    return body


def data_of(response) -> dict:
    assert response.json()["success"] is True, response.json()
    return response.json()["data"]


def error_of(response) -> dict:
    assert response.json()["success"] is False, response.json()
    return response.json()["error"]


def rule_json(rule: AutomationRule, **overrides) -> dict:
    step = rule.steps.get()
    body = {"id": rule.pk, "name": rule.name, "trigger_type": rule.trigger_type, "conditions": rule.conditions,
            "is_active": rule.is_active, "quiet_hours": None, "max_sends_per_lead_per_day": 3, "allow_reentry": False,
            "exit_on_reply": True, "exit_on_won": True, "no_reply_hours": None, "flagged_reason": "",
            "steps": [{"id": step.pk, "order": 1, "delay_minutes": step.delay_minutes, "template_id": step.template_id,
                       "template": step.template_id, "template_name": "seguimiento_lead_v1", "variables": FOLLOW_UP_VARIABLES}],
            "counters": NO_COUNTERS, "sent_count": 0, "delivered_count": 0, "read_count": 0, "failed_count": 0, "created_at": rule.created_at.isoformat().replace("+00:00", "Z"),
            "updated_at": rule.updated_at.isoformat().replace("+00:00", "Z")}
    body.update(overrides)
    return body


# -- create, read, update, delete ----------------------------------------------------------------------------------
def test_alice_creates_a_rule_and_reads_it_back_in_the_designs_shape(alice, alice_api, acme, template):
    response = alice_api.post(URL, welcome(template, quiet_hours={"start": "22:00", "end": "08:00"}), format="json")

    rule = AutomationRule.objects.get()
    assert response.status_code == 201
    assert data_of(response) == rule_json(rule, quiet_hours={"start": "22:00", "end": "08:00"},
                                          conditions={"lead_sources": ["meta_lead_ads"]})
    assert data_of(alice_api.get(f"{URL}/{rule.pk}")) == data_of(response)
    assert data_of(alice_api.get(URL)) == [data_of(response)]
    assert (rule.account, rule.created_by, rule.quiet_hours_start.isoformat()) == (acme, alice, "22:00:00")
    event = SystemEvent.objects.get()
    assert (event.action, event.actor, event.target_id) == ("automation.rule.created", alice, str(rule.pk))


def test_counters_add_up_the_rules_sends_by_how_far_they_got(alice_api, acme, template):
    rule = make_rule(acme, template)
    step = rule.steps.get()
    from django.utils import timezone

    for n, status in enumerate(["queued", "sent", "delivered", "read", "read", "failed", "skipped"]):
        MessageSend.objects.create(account=acme, rule=rule, step=step, lead=make_lead(acme), template=template,
                                   trigger_type="lead_created", trigger_key=f"event:{n}", status=status,
                                   skip_reason="cap_reached" if status == "skipped" else "", due_at=timezone.now())

    body = data_of(alice_api.get(f"{URL}/{rule.pk}"))

    assert body["counters"] == {"sends": 7, "sent": 4, "delivered": 3, "read": 2, "failed": 1, "skipped": 1}
    assert [body[f"{name}_count"] for name in ("sent", "delivered", "read", "failed")] == [4, 3, 2, 1]


def test_the_hub_turns_a_rule_off_with_a_patch(alice_api, acme, template):
    rule = make_rule(acme, template)

    response = alice_api.patch(f"{URL}/{rule.pk}", {"is_active": False}, format="json")

    rule.refresh_from_db()
    assert response.status_code == 200
    assert data_of(response)["is_active"] is False and rule.is_active is False
    assert rule.steps.count() == 1
    assert SystemEvent.objects.get().action == "automation.rule.updated"


def test_a_rule_whose_template_meta_paused_can_still_be_turned_off_and_renamed(alice_api, acme, template):
    rule = make_rule(acme, template)
    template.status = "PAUSED"
    template.save()

    off = alice_api.patch(f"{URL}/{rule.pk}", {"is_active": False, "name": "Welcome (paused)"}, format="json")

    assert off.status_code == 200, off.json()
    assert data_of(off)["name"] == "Welcome (paused)"


def test_a_patch_with_steps_replaces_them_and_keeps_the_row_of_an_unchanged_order(alice_api, acme, template):
    rule = make_rule(acme, template)
    first_step = rule.steps.get()
    named = make_template(acme, "recordatorio", meta_template_id="1100002", parameter_format="NAMED",
                          components=[{"type": "BODY", "text": "Hola {{first_name}}"}])

    response = alice_api.patch(f"{URL}/{rule.pk}", {"steps": [
        {"order": 1, "delay_minutes": 5, "template_id": template.pk, "variables": FOLLOW_UP_VARIABLES},
        {"order": 2, "delay_minutes": 1440, "template_id": named.pk, "variables": {"first_name": "lead.first_name"}}]},
        format="json")

    assert response.status_code == 200, response.json()
    steps = list(RuleStep.objects.filter(rule=rule).order_by("order").values_list("pk", "order", "delay_minutes", "template__name"))
    assert steps == [(first_step.pk, 1, 5, "seguimiento_lead_v1"), (steps[1][0], 2, 1440, "recordatorio")]
    assert [s["template_name"] for s in data_of(response)["steps"]] == ["seguimiento_lead_v1", "recordatorio"]


def test_replacing_a_paused_template_clears_the_rules_flag(alice_api, acme, template):
    paused = make_template(acme, "pausado", status="PAUSED", meta_template_id="2")
    rule = make_rule(acme, paused, flagged_reason="Template pausado is PAUSED")

    response = alice_api.patch(f"{URL}/{rule.pk}", {"steps": [{"template_id": template.pk, "variables": FOLLOW_UP_VARIABLES}]},
                               format="json")

    rule.refresh_from_db()
    assert response.status_code == 200
    assert data_of(response)["flagged_reason"] == rule.flagged_reason == ""


def test_turning_on_a_rule_whose_template_meta_paused_flags_it(alice_api, acme, template):
    rule = make_rule(acme, template, is_active=False)
    template.status = "PAUSED"
    template.save()

    response = alice_api.patch(f"{URL}/{rule.pk}", {"is_active": True}, format="json")

    assert response.status_code == 200
    assert data_of(response)["flagged_reason"] == "Template seguimiento_lead_v1 is PAUSED"


def test_alice_deletes_a_rule_and_its_queued_sends_end_skipped(alice, alice_api, acme, template):
    from django.utils import timezone

    rule = make_rule(acme, template)
    send = MessageSend.objects.create(account=acme, rule=rule, step=rule.steps.get(), lead=make_lead(acme), template=template,
                                      trigger_type="lead_created", trigger_key="event:1", due_at=timezone.now())

    response = alice_api.delete(f"{URL}/{rule.pk}")

    send.refresh_from_db()
    assert response.status_code == 204
    assert not AutomationRule.objects.exists() and not RuleStep.objects.exists()
    assert (send.status, send.skip_reason, send.rule_id) == ("skipped", "rule_inactive", None)
    assert SystemEvent.objects.get().action == "automation.rule.deleted"


# -- validation ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, fields", [
    ({"steps": []}, ["steps"]),
    ({"trigger_type": "lead_deleted"}, ["trigger_type"]),
    ({"trigger_type": "no_reply"}, ["no_reply_hours"]),
    ({"conditions": {"lead_sources": ["tiktok"]}}, ["conditions"]),
    ({"conditions": {"colour": ["blue"]}}, ["conditions"]),
    ({"conditions": {"campaign_ids": ["act_1"]}}, ["conditions"]),
    ({"quiet_hours": {"start": "22:00"}}, ["quiet_hours.end"]),
    ({"account": 99}, ["account"]),
    ({"counters": {}}, ["counters"]),
])
def test_an_invalid_rule_is_a_400_with_its_field_and_nothing_is_written(alice_api, acme, template, change, fields):
    response = alice_api.post(URL, welcome(template, **change), format="json")

    assert response.status_code == 400
    assert sorted(error_of(response)["fields"]) == fields
    assert not AutomationRule.objects.exists() and not SystemEvent.objects.exists()


def test_a_step_whose_variables_do_not_fit_the_template_is_a_400(alice_api, acme, template):
    response = alice_api.post(URL, welcome(template, steps=[{"template_id": template.pk, "variables": {"1": "lead.first_name"}}]),
                              format="json")

    assert response.status_code == 400
    assert error_of(response)["fields"] == {"steps.0.variables": [
        "The template has 3 variable(s) (1, 2, 3); the step maps 1, missing ['2', '3']."]}
    assert not AutomationRule.objects.exists()


def test_a_step_may_not_pick_an_unapproved_or_another_accounts_template(alice_api, acme, globex):
    pending = make_template(acme, "pending_one", status="PENDING", meta_template_id="2")
    theirs = make_template(globex, "globex_only")

    response = alice_api.post(URL, welcome(pending, steps=[
        {"template_id": pending.pk, "variables": FOLLOW_UP_VARIABLES},
        {"template_id": theirs.pk, "variables": FOLLOW_UP_VARIABLES}]), format="json")

    assert response.status_code == 400
    assert error_of(response)["fields"] == {
        "steps.0.template_id": ["Template pending_one is PENDING: only APPROVED templates can be sent."],
        "steps.1.template_id": ["No template with this id in this account."]}
    assert not AutomationRule.objects.exists()


def test_a_second_active_rule_with_the_same_trigger_and_conditions_is_a_409(alice_api, acme, template):
    make_rule(acme, template, conditions={"lead_sources": ["meta_lead_ads"]})

    response = alice_api.post(URL, welcome(template), format="json")
    inactive = alice_api.post(URL, welcome(template, is_active=False), format="json")

    assert response.status_code == 409
    assert error_of(response)["code"] == "duplicate_rule"
    assert inactive.status_code == 201
    assert AutomationRule.objects.count() == 2
    assert alice_api.patch(f"{URL}/{data_of(inactive)['id']}", {"is_active": True}, format="json").status_code == 409


# -- the original client's bulk POST -----------------------------------------------------------------------------------
def test_a_bulk_post_creates_and_updates_rules_in_one_go(alice_api, acme, template):
    existing = make_rule(acme, template, name="Old name")

    response = alice_api.post(URL, {"rules": [
        {"id": existing.pk, "name": "New name"},
        welcome(template, name="Won", trigger_type="opportunity_won", conditions={})]}, format="json")

    assert response.status_code == 200
    assert data_of(response) == {"updated": 2, "rules_count": 2}
    assert sorted(AutomationRule.objects.values_list("name", "trigger_type")) == [("New name", "lead_created"), ("Won", "opportunity_won")]


def test_a_bulk_post_with_one_bad_rule_writes_nothing(alice_api, acme, template):
    existing = make_rule(acme, template, name="Old name")

    response = alice_api.post(URL, {"rules": [
        {"id": existing.pk, "name": "New name"},
        welcome(template, name="Won", trigger_type="opportunity_won"),
        welcome(template, name="Broken", trigger_type="opportunity_created", steps=[{"template_id": template.pk, "variables": {}}])]},
        format="json")

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["rules.2.steps.0.variables"]
    assert list(AutomationRule.objects.values_list("name", flat=True)) == ["Old name"]
    assert not SystemEvent.objects.exists()


def test_a_bulk_post_with_two_alike_active_rules_is_a_409_and_writes_nothing(alice_api, acme, template):
    response = alice_api.post(URL, {"rules": [welcome(template, name="One"), welcome(template, name="Two")]}, format="json")

    assert response.status_code == 409
    assert not AutomationRule.objects.exists()


def test_a_bulk_post_naming_another_accounts_rule_is_a_404_and_writes_nothing(alice_api, acme, globex, template):
    theirs = make_rule(globex, make_template(globex), name="Globex")

    response = alice_api.post(URL, {"rules": [welcome(template), {"id": theirs.pk, "name": "Hijacked"}]}, format="json")

    assert response.status_code == 404
    assert list(AutomationRule.objects.values_list("name", flat=True)) == ["Globex"]


# -- the preview -----------------------------------------------------------------------------------------------------
def test_the_preview_renders_each_step_for_the_lead(alice_api, acme, template):
    rule = make_rule(acme, template, delay_minutes=30)
    seller = make_user("juan", acme, "seller", first_name="Juan")
    lead = make_lead(acme, first_name="María", meta_ad_headline="Plan Pro", seller=seller)

    response = alice_api.post(f"{URL}/{rule.pk}/preview", {"lead_id": lead.pk}, format="json")

    assert response.status_code == 200
    assert data_of(response) == [{
        "order": 1, "delay_minutes": 30, "template_name": "seguimiento_lead_v1", "template_status": "APPROVED",
        "header": "¡Hola María!", "body": "Gracias por tu interés en Plan Pro. ¿Querés que Juan te llame hoy?",
        "footer": "Respondé STOP para no recibir más mensajes", "buttons": ["Sí, llamame", "Ahora no"]}]


def test_the_preview_reads_the_leads_latest_opportunity(alice_api, acme):
    template = make_template(acme, components=[{"type": "BODY", "text": "{{1}} por {{2}}"}])
    rule = make_rule(acme, template, variables={"1": "opportunity.title", "2": "opportunity.amount"})
    lead = make_lead(acme)
    make_opportunity(lead, title="Plan Pro anual", amount="1200.00")

    response = alice_api.post(f"{URL}/{rule.pk}/preview", {"lead_id": lead.pk}, format="json")

    assert data_of(response)[0]["body"] == "Plan Pro anual por 1,200.00 USD"


def test_a_preview_for_another_accounts_lead_is_a_404(alice_api, acme, globex, template):
    rule = make_rule(acme, template)
    their_lead = make_lead(globex, first_name="GlobexLead")

    response = alice_api.post(f"{URL}/{rule.pk}/preview", {"lead_id": their_lead.pk}, format="json")

    assert response.status_code == 404
    assert "GlobexLead" not in response.content.decode()


# -- who may do what -------------------------------------------------------------------------------------------------
def test_another_accounts_rule_is_a_404_for_every_method(mallory_api, acme, template):
    rule = make_rule(acme, template)

    answers = [mallory_api.get(f"{URL}/{rule.pk}").status_code,
               mallory_api.patch(f"{URL}/{rule.pk}", {"is_active": False}, format="json").status_code,
               mallory_api.delete(f"{URL}/{rule.pk}").status_code,
               mallory_api.post(f"{URL}/{rule.pk}/preview", {"lead_id": make_lead(acme).pk}, format="json").status_code]

    assert answers == [404, 404, 404, 404]
    assert data_of(mallory_api.get(URL)) == []
    rule.refresh_from_db()
    assert rule.is_active is True


def test_marketing_reads_and_previews_rules_but_cannot_write_them(acme, template):
    maria = api_client_for(make_user("maria", acme, "marketing"))
    rule = make_rule(acme, template)

    reads = [maria.get(URL).status_code, maria.get(f"{URL}/{rule.pk}").status_code,
             maria.post(f"{URL}/{rule.pk}/preview", {"lead_id": make_lead(acme).pk}, format="json").status_code]
    writes = [maria.post(URL, welcome(template, is_active=False), format="json").status_code,
              maria.patch(f"{URL}/{rule.pk}", {"is_active": False}, format="json").status_code,
              maria.delete(f"{URL}/{rule.pk}").status_code]

    assert (reads, writes) == ([200, 200, 200], [403, 403, 403])
    assert AutomationRule.objects.filter(is_active=True).count() == 1


def test_a_seller_gets_403_even_for_reading_rules(bob_api, acme, template):
    rule = make_rule(acme, template)

    assert [bob_api.get(URL).status_code, bob_api.get(f"{URL}/{rule.pk}").status_code] == [403, 403]


def test_a_rule_id_beyond_the_database_range_is_the_json_404(alice_api, acme):
    response = alice_api.patch(f"{URL}/99999999999999999999999", {"is_active": False}, format="json")

    assert response.status_code == 404
    assert response.json() == {"success": False, "error": {"code": "not_found", "message": "Not found.", "fields": {}}}
