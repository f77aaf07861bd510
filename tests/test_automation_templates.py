"""WhatsApp templates: the sync from the WABA (over HTTP to the sandbox), the status webhooks that keep
them current and flag rules, the list endpoint, "sync now", the command and the schedule."""
from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import Schedule, Task

from automation.models import AutomationRule, MessageSend, MessageTemplate
from automation.services.templates import sync_templates
from crm_marketing.audit import SystemEvent
from crm_marketing.models import WebhookEvent
from crm_marketing.sandbox import template_status_payload
from meta_oauth.models import WhatsAppChannel
from meta_oauth.services import client_for_account
from tests.conftest import api_client_for, make_lead, make_user
from tests.fixtures.catalog import FOLLOW_UP_COMPONENTS, make_channel, make_rule, make_template
from tests.fixtures.webhooks import connect_meta, post_signed

pytestmark = pytest.mark.django_db
URL = "/crm/marketing/hsm/templates"


@pytest.fixture
def acme_whatsapp(acme, meta_sandbox):
    """acme connected to Meta with the sandbox's WhatsApp number (WABA 1200001) selected."""
    connect_meta(acme, meta_sandbox, ad_account=None)
    return WhatsAppChannel.objects.get(account=acme, is_selected=True)


def served_templates(sandbox) -> list[dict]:
    """The templates the sandbox's WABA 1200001 serves now, as Meta sends them."""
    with sandbox.state.lock:
        return [dict(t) for t in sandbox.state.templates]


def synced(account) -> dict[str, tuple]:
    return {t.name: (t.meta_template_id, t.language, t.category, t.status, t.parameter_format, t.quality_score, t.rejected_reason)
            for t in MessageTemplate.objects.filter(account=account)}


# -- the sync --------------------------------------------------------------------------------------------------
def test_a_sync_stores_every_template_of_the_waba_with_the_status_meta_sends(acme, acme_whatsapp, meta_sandbox):
    served = served_templates(meta_sandbox)

    result = sync_templates(acme, client=client_for_account(acme))

    assert (result.created, result.updated, result.marked_deleted) == (len(served), 0, 0)
    assert synced(acme) == {  # Meta leaves parameter_format out of older (positional) templates
        t["name"]: (t["id"], t["language"], t["category"], t["status"], t.get("parameter_format", "POSITIONAL"),
                    t.get("quality_score", {}).get("score", ""), t.get("rejected_reason", ""))
        for t in served}
    assert synced(acme)["promo_black_friday"] == ("1100003", "es_AR", "MARKETING", "REJECTED", "POSITIONAL", "", "PROMOTIONAL")
    assert {row[3] for row in synced(acme).values()} == {
        "APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED", "IN_APPEAL", "PENDING_DELETION", "LIMIT_EXCEEDED"}
    assert {row[4] for row in synced(acme).values()} == {"POSITIONAL", "NAMED"}
    assert MessageTemplate.objects.get(name="seguimiento_lead_v1").components == FOLLOW_UP_COMPONENTS
    assert {t.meta_waba_id for t in MessageTemplate.objects.all()} == {"1200001"}
    calls = [r for r in meta_sandbox.requests if "message_templates" in r.path]
    assert [(r.path, r.query.get("fields")) for r in calls] == [
        ("/1200001/message_templates", "id,name,language,status,category,components,quality_score,rejected_reason,parameter_format")]


def test_a_sync_follows_every_page_and_keeps_statuses_meta_adds_tomorrow(acme, acme_whatsapp, meta_sandbox):
    with meta_sandbox.state.lock:
        meta_sandbox.state.templates.extend(
            {"id": str(1200100 + n), "name": f"extra_{n:03d}", "language": "es", "category": "UTILITY",
             "status": "SOME_NEW_STATUS" if n == 0 else "APPROVED", "components": [{"type": "BODY", "text": f"Extra {n}"}]}
            for n in range(150))

    served = served_templates(meta_sandbox)

    result = sync_templates(acme, client=client_for_account(acme))

    assert len(served) > 100
    assert result.created == len(served)
    assert MessageTemplate.objects.filter(account=acme).count() == len(served)
    assert MessageTemplate.objects.get(name="extra_000").status == "SOME_NEW_STATUS"
    assert len([r for r in meta_sandbox.requests if "message_templates" in r.path]) == 2  # 100 per page


def test_a_second_sync_updates_in_place_and_marks_templates_meta_dropped_as_deleted(acme, acme_whatsapp, meta_sandbox):
    sync_templates(acme, client=client_for_account(acme))
    first_ids = dict(MessageTemplate.objects.values_list("name", "pk"))
    first_statuses = {t["name"]: t["status"] for t in served_templates(meta_sandbox)}
    with meta_sandbox.state.lock:
        meta_sandbox.state.templates[:] = [t for t in meta_sandbox.state.templates if t["name"] != "promo_black_friday"]
    meta_sandbox.set_template_status("recordatorio_reunion", "APPROVED")

    result = sync_templates(acme, client=client_for_account(acme))

    assert (result.created, result.updated, result.unchanged, result.marked_deleted) == (0, 1, len(first_ids) - 2, 1)
    assert result.status_changes == ["recordatorio_reunion PENDING -> APPROVED", "promo_black_friday REJECTED -> DELETED"]
    assert dict(MessageTemplate.objects.values_list("name", "pk")) == first_ids  # rows kept: steps point at them
    assert {name: row[3] for name, row in synced(acme).items()} == dict(
        first_statuses, recordatorio_reunion="APPROVED", promo_black_friday="DELETED")


def test_a_rule_is_flagged_when_its_template_is_paused_and_cleared_when_approved_again(acme, acme_whatsapp, meta_sandbox):
    sync_templates(acme, client=client_for_account(acme))
    rule = make_rule(acme, MessageTemplate.objects.get(name="seguimiento_lead_v1"))

    meta_sandbox.set_template_status("seguimiento_lead_v1", "PAUSED")
    paused = sync_templates(acme, client=client_for_account(acme))
    rule.refresh_from_db()
    flag_while_paused = rule.flagged_reason
    meta_sandbox.set_template_status("seguimiento_lead_v1", "APPROVED")
    approved = sync_templates(acme, client=client_for_account(acme))
    rule.refresh_from_db()

    assert flag_while_paused == "Template seguimiento_lead_v1 is PAUSED"
    assert (paused.rules_flagged, approved.rules_cleared) == (1, 1)
    assert rule.flagged_reason == ""
    assert paused.status_changes == ["seguimiento_lead_v1 APPROVED -> PAUSED"]


def test_a_flag_written_for_another_reason_is_not_cleared_by_a_sync(acme, acme_whatsapp):
    template = make_template(acme)
    rule = make_rule(acme, template, flagged_reason="Meta error 132000: parameter count mismatch")

    sync_templates(acme, client=client_for_account(acme))

    rule.refresh_from_db()
    assert rule.flagged_reason == "Meta error 132000: parameter count mismatch"


def test_a_sync_without_a_whatsapp_channel_is_refused_and_writes_nothing(acme, meta_sandbox):
    from crm_marketing.errors import NotConnected

    connect_meta(acme, meta_sandbox, ad_account=None, phone_number_id=None)

    with pytest.raises(NotConnected, match="No WhatsApp channel"):
        sync_templates(acme, client=client_for_account(acme))
    assert not MessageTemplate.objects.exists()


# -- the status webhook ------------------------------------------------------------------------------------------
def deliver(client, django_capture_on_commit_callbacks, payload):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_signed(client, payload)
    assert response.status_code == 200
    return WebhookEvent.objects.order_by("-pk").first()


def test_a_paused_template_webhook_updates_only_the_template_of_the_waba_it_names(
        client, acme, globex, django_capture_on_commit_callbacks):
    make_channel(acme)
    make_channel(globex, waba_id="1209999", phone_number_id="1309999")
    acme_rule = make_rule(acme, make_template(acme))
    globex_template = make_template(globex)  # same Meta id in another WABA: must not move

    event = deliver(client, django_capture_on_commit_callbacks, template_status_payload(1100001, "seguimiento_lead_v1", "PAUSED",
                                                                                        waba_id="1200001"))

    acme_rule.refresh_from_db()
    globex_template.refresh_from_db()
    assert (event.status, event.account_id, event.result) == (
        "processed", acme.pk, "template seguimiento_lead_v1 is PAUSED: 1 rule(s) flagged, 0 flag(s) cleared")
    assert MessageTemplate.objects.get(account=acme).status == "PAUSED"
    assert acme_rule.flagged_reason == "Template seguimiento_lead_v1 is PAUSED"
    assert globex_template.status == "APPROVED"


def test_a_reinstated_template_is_approved_again_and_its_rule_unflagged(client, acme, django_capture_on_commit_callbacks):
    make_channel(acme)
    rule = make_rule(acme, make_template(acme, status="PAUSED"), flagged_reason="Template seguimiento_lead_v1 is PAUSED")

    deliver(client, django_capture_on_commit_callbacks, template_status_payload(1100001, "seguimiento_lead_v1", "REINSTATED"))

    rule.refresh_from_db()
    assert MessageTemplate.objects.get().status == "APPROVED"
    assert rule.flagged_reason == ""


def test_a_rejected_template_keeps_metas_reason(client, acme, django_capture_on_commit_callbacks):
    make_channel(acme)
    make_template(acme, status="PENDING")

    deliver(client, django_capture_on_commit_callbacks,
            template_status_payload(1100001, "seguimiento_lead_v1", "REJECTED", reason="INCORRECT_CATEGORY"))

    template = MessageTemplate.objects.get()
    assert (template.status, template.rejected_reason) == ("REJECTED", "INCORRECT_CATEGORY")


def test_a_template_webhook_of_an_unknown_waba_is_ignored_and_changes_nothing(client, acme, django_capture_on_commit_callbacks):
    make_channel(acme)
    make_template(acme)

    event = deliver(client, django_capture_on_commit_callbacks,
                    template_status_payload(1100001, "seguimiento_lead_v1", "DISABLED", waba_id="1299999"))

    assert (event.status, event.account_id, event.error) == ("ignored", None, "WABA 1299999 belongs to no account of ours")
    assert MessageTemplate.objects.get().status == "APPROVED"


def test_a_quality_webhook_updates_the_templates_quality(client, acme, django_capture_on_commit_callbacks):
    make_channel(acme)
    make_template(acme, quality_score="GREEN")
    payload = template_status_payload(1100001, "seguimiento_lead_v1", "APPROVED")
    change = payload["entry"][0]["changes"][0]
    change["field"] = "message_template_quality_update"
    change["value"] = {"previous_quality_score": "GREEN", "new_quality_score": "YELLOW", "message_template_id": 1100001,
                       "message_template_name": "seguimiento_lead_v1", "message_template_language": "es"}

    event = deliver(client, django_capture_on_commit_callbacks, payload)

    assert (event.status, MessageTemplate.objects.get().quality_score) == ("processed", "YELLOW")


def test_a_category_webhook_updates_the_templates_category(client, acme, django_capture_on_commit_callbacks):
    make_channel(acme)
    make_template(acme, category="UTILITY")
    payload = template_status_payload(1100001, "seguimiento_lead_v1", "APPROVED")
    change = payload["entry"][0]["changes"][0]
    change["field"] = "template_category_update"
    change["value"] = {"message_template_id": 1100001, "message_template_name": "seguimiento_lead_v1",
                       "message_template_language": "es", "previous_category": "UTILITY", "new_category": "MARKETING"}

    event = deliver(client, django_capture_on_commit_callbacks, payload)

    assert (event.status, MessageTemplate.objects.get().category) == ("processed", "MARKETING")


# -- GET /crm/marketing/hsm/templates ------------------------------------------------------------------------------
def test_the_template_list_is_a_plain_list_in_the_designs_shape(alice_api, acme, globex):
    template = make_template(acme, quality_score="GREEN")
    make_template(globex, name="globex_only")
    step = make_rule(acme, template).steps.get()
    # Counted from the template's sends: a send that failed after delivery still counts as sent and delivered.
    for n, status in enumerate(["read", "read", "delivered", "sent", "queued", "skipped"]):
        MessageSend.objects.create(account=acme, rule=step.rule, step=step, lead=make_lead(acme), template=template,
                                   trigger_type="lead_created", trigger_key=f"event:{n}", status=status,
                                   skip_reason="cap_reached" if status == "skipped" else "", due_at=timezone.now())
    MessageSend.objects.create(account=acme, rule=step.rule, step=step, lead=make_lead(acme), template=template,
                               trigger_type="lead_created", trigger_key="event:9", status="failed", due_at=timezone.now(),
                               sent_at=timezone.now(), delivered_at=timezone.now())

    response = alice_api.get(URL)

    assert response.status_code == 200
    assert response.json()["data"] == [{
        "id": template.pk, "name": "seguimiento_lead_v1", "category": "MARKETING", "language": "es", "status": "APPROVED",
        "components": FOLLOW_UP_COMPONENTS, "quality_score": "GREEN",
        "body_text": "Gracias por tu interés en {{2}}. ¿Querés que {{3}} te llame hoy?", "variables_count": 3,
        "sent_count": 5, "delivered_count": 4, "read_count": 2, "parameter_format": "POSITIONAL",
        "placeholders": ["1", "2", "3"], "rejected_reason": "", "meta_template_id": "1100001"}]


def test_the_template_list_filters_on_any_status_meta_sends(alice_api, acme):
    make_template(acme, "a_approved", meta_template_id="1")
    make_template(acme, "b_paused", status="PAUSED", meta_template_id="2")
    make_template(acme, "c_limit", status="LIMIT_EXCEEDED", meta_template_id="3")

    def names(query: str) -> list[str]:
        response = alice_api.get(f"{URL}?status={query}")
        assert response.status_code == 200, response.json()
        return [t["name"] for t in response.json()["data"]]

    assert names("APPROVED") == ["a_approved"]
    assert names("paused,limit_exceeded") == ["b_paused", "c_limit"]
    assert names("IN_APPEAL") == []


def test_a_malformed_status_filter_is_a_400(alice_api, acme):
    response = alice_api.get(f"{URL}?status=APPROVED;DROP")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["status"]


def test_marketing_reads_templates_and_a_seller_is_refused(acme, bob_api):
    maria = make_user("maria", acme, "marketing")

    assert api_client_for(maria).get(URL).status_code == 200
    assert bob_api.get(URL).status_code == 403


# -- POST /crm/marketing/hsm/templates/sync, the command, the schedule ------------------------------------------------
def test_alice_queues_a_template_sync_and_the_worker_runs_it(alice, alice_api, acme, acme_whatsapp, meta_sandbox,
                                                             django_capture_on_commit_callbacks):
    served = len(served_templates(meta_sandbox))

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_api.post(f"{URL}/sync")

    body = response.json()
    assert response.status_code == 202
    task = Task.objects.get(name=body["data"]["task_id"])
    assert (task.func, task.args, task.success) == ("automation.tasks.sync_account_templates", (acme.pk,), True)
    assert task.result.startswith(f"acme WABA 1200001: {served} template(s) ({served} new")
    assert MessageTemplate.objects.filter(account=acme).count() == served
    event = SystemEvent.objects.get(action="automation.templates.sync")
    assert (event.account_id, event.actor_id, event.details) == (acme.pk, alice.pk, {"task_id": body["data"]["task_id"]})


def test_a_marketing_member_cannot_start_a_template_sync(acme, acme_whatsapp):
    maria = make_user("maria", acme, "marketing")

    response = api_client_for(maria).post(f"{URL}/sync")

    assert response.status_code == 403
    assert not SystemEvent.objects.exists()


def test_a_template_sync_without_a_whatsapp_channel_is_a_503(alice_api, acme, meta_sandbox):
    connect_meta(acme, meta_sandbox, ad_account=None, phone_number_id=None)

    response = alice_api.post(f"{URL}/sync")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "whatsapp_channel_not_selected"
    assert not SystemEvent.objects.exists()


def test_the_command_syncs_one_account_and_prints_one_line(acme, acme_whatsapp, meta_sandbox):
    served = len(served_templates(meta_sandbox))
    out = io.StringIO()

    call_command("sync_hsm_templates", "--account", "acme", stdout=out)

    assert out.getvalue() == (f"Synced templates of 1 account(s): {served} template(s), {served} new, 0 updated, 0 marked DELETED, "
                              "0 rule(s) flagged, 0 flag(s) cleared.\n")


def test_the_command_refuses_an_unknown_account_in_one_line(db):
    with pytest.raises(CommandError, match="^No account with slug 'nope'.$"):
        call_command("sync_hsm_templates", "--account", "nope")


def test_a_schedule_syncs_every_accounts_templates_every_six_hours(acme, acme_whatsapp, meta_sandbox):
    schedule = Schedule.objects.get(name="automation.sync_all_templates")

    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        "automation.tasks.sync_all_templates", "I", 360, -1)
    from automation.tasks import sync_all_templates
    assert sync_all_templates().startswith(f"acme WABA 1200001: {len(served_templates(meta_sandbox))} template(s) (")
    assert AutomationRule.objects.count() == 0
