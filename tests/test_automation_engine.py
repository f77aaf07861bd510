"""The send engine end to end against the Meta sandbox: planning from CRM events, the send itself,
the re-checks that skip a send, Meta's error codes, and exactly-once planning."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.utils import timezone

from automation.engine import planning
from automation.engine.passes import reconcile, run_pass
from automation.models import AutomationRule, MessageSend, MessageTemplate
from automation.services.counters import counters_by
from crm_marketing import events, services
from crm_marketing.models import Lead
from tests.conftest import make_lead, make_opportunity
from tests.fixtures.automation import _no_second_guard, acme_whatsapp, make_rule, make_template, statuses  # noqa: F401

UTC = dt.timezone.utc


def one_pass() -> str:
    return run_pass(budget_seconds=5).summary()


def template_messages(sandbox) -> list[dict]:
    return [m for m in sandbox.sent_messages if m.get("type") == "template"]


def new_lead_event(lead: Lead, event_id: int | None = None) -> events.DomainEvent:
    return events.DomainEvent(events.LEAD_CREATED, lead.account_id, {"lead_id": lead.pk}, id=event_id)


# -- the happy path ------------------------------------------------------------------------------------------
def test_a_lead_created_through_the_crm_gets_its_welcome_at_once_with_its_send_id_as_callback_data(
        acme, alice, acme_whatsapp, meta_sandbox, django_capture_on_commit_callbacks):
    make_rule(acme, acme_whatsapp, name="Welcome")
    with django_capture_on_commit_callbacks(execute=True):
        lead = services.create_lead(acme, actor=alice, first_name="María", phone="+5491155550001",
                                    meta_ad_headline="Plan Pro", lead_source="meta_lead_ads")

    send = MessageSend.objects.get(lead=lead)
    assert [{k: v for k, v in m.items() if k != "sent_at"} for m in template_messages(meta_sandbox)] == [{
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "5491155550001", "type": "template",
        "template": {"name": "seguimiento_lead_v1", "language": {"code": "es"}, "components": [
            {"type": "header", "parameters": [{"type": "text", "text": "María"}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Plan Pro"}, {"type": "text", "text": "Acme"}]}]},
        "biz_opaque_callback_data": str(send.pk),
        "wamid": send.meta_message_id, "phone_number_id": "1300001"}]
    assert (send.status, send.trigger_type, send.rule_name, send.template_name, send.attempts) == \
        ("sent", "lead_created", "Welcome", "seguimiento_lead_v1", 0)
    assert send.sent_at is not None and send.meta_message_id.startswith("wamid.")
    assert counters_by("template_id", [acme_whatsapp.pk])[acme_whatsapp.pk]["sent"] == 1
    assert counters_by("rule_id", [send.rule_id])[send.rule_id]["sent"] == 1


def test_the_same_event_delivered_twice_plans_and_sends_one_message(acme, acme_whatsapp, meta_sandbox):
    make_rule(acme, acme_whatsapp)
    lead = make_lead(acme, phone="+5491155550002")

    first = planning.plan_for_event(new_lead_event(lead, 41))
    second = planning.plan_for_event(new_lead_event(lead, 41))
    one_pass()
    third = planning.plan_for_event(new_lead_event(lead, 41))
    one_pass()

    assert (first.created, second.created, third.created) == (1, 0, 0)
    assert MessageSend.objects.filter(lead=lead).count() == 1
    assert len(template_messages(meta_sandbox)) == 1


def test_without_an_event_id_the_key_comes_from_the_payload_so_a_redelivery_still_plans_once(acme, acme_whatsapp):
    make_rule(acme, acme_whatsapp)
    lead = make_lead(acme)

    planning.plan_for_event(new_lead_event(lead))
    planning.plan_for_event(new_lead_event(lead))

    assert list(MessageSend.objects.values_list("trigger_key", flat=True)) == [f"lead_created:lead:{lead.pk}"]


def test_a_lead_that_already_went_through_a_rule_does_not_enter_it_again_unless_reentry_is_on(acme, acme_whatsapp):
    once = make_rule(acme, acme_whatsapp, trigger="lead_status_changed", name="Once")
    lead = make_lead(acme)

    planning.plan_for_event(events.DomainEvent(events.LEAD_STATUS_CHANGED, acme.pk, {"lead_id": lead.pk, "new": "contacted"}, id=1))
    planning.plan_for_event(events.DomainEvent(events.LEAD_STATUS_CHANGED, acme.pk, {"lead_id": lead.pk, "new": "qualified"}, id=2))
    AutomationRule.objects.filter(pk=once.pk).update(allow_reentry=True)
    planning.plan_for_event(events.DomainEvent(events.LEAD_STATUS_CHANGED, acme.pk, {"lead_id": lead.pk, "new": "new"}, id=3))

    assert sorted(MessageSend.objects.values_list("trigger_key", flat=True)) == ["event:1", "event:3"]


def test_rules_plan_only_for_leads_matching_their_conditions(acme, acme_whatsapp):
    make_rule(acme, acme_whatsapp, name="Meta campaign 777", conditions={"lead_sources": ["meta_lead_ads"], "campaign_ids": ["777"]})
    make_rule(acme, acme_whatsapp, trigger="opportunity_stage_changed", name="Proposal", conditions={"stages": ["proposal"]})
    matching = make_lead(acme, lead_source="meta_lead_ads", meta_campaign_id="777")
    other_campaign = make_lead(acme, lead_source="meta_lead_ads", meta_campaign_id="778")
    manual = make_lead(acme, lead_source="manual", meta_campaign_id="777")
    proposal = make_opportunity(matching, stage="proposal")
    negotiation = make_opportunity(other_campaign, stage="negotiation")

    for lead in (matching, other_campaign, manual):
        planning.plan_for_event(new_lead_event(lead, 100 + lead.pk))
    for opportunity in (proposal, negotiation):
        planning.plan_for_event(events.DomainEvent(events.OPPORTUNITY_STAGE_CHANGED, acme.pk,
                                                   {"opportunity_id": opportunity.pk, "old": "new", "new": opportunity.stage}, id=900 + opportunity.pk))

    assert sorted(MessageSend.objects.values_list("rule_name", "lead_id")) == [
        ("Meta campaign 777", matching.pk), ("Proposal", matching.pk)]


def test_steps_are_due_at_the_event_time_plus_their_delay(acme, acme_whatsapp):
    make_rule(acme, acme_whatsapp, delays=(0, 60 * 24))
    lead = make_lead(acme)
    at = dt.datetime(2026, 6, 1, 15, 0, tzinfo=UTC)

    planning.plan_sends(lead, "lead_created", "event:7", at=at)

    assert list(MessageSend.objects.order_by("due_at").values_list("due_at", flat=True)) == [at, at + dt.timedelta(days=1)]


# -- quiet hours ---------------------------------------------------------------------------------------------------
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(("event_local", "expected_utc"), [
    # The night before spring forward (EST, UTC-5): quiet until 08:00, which is EDT (UTC-4) that morning.
    (dt.datetime(2026, 3, 7, 22, 30), dt.datetime(2026, 3, 8, 12, 0)),
    # The night before fall back (EDT): 08:00 the next morning is EST.
    (dt.datetime(2026, 10, 31, 23, 0), dt.datetime(2026, 11, 1, 13, 0)),
    # After midnight, inside the window: the same morning.
    (dt.datetime(2026, 11, 1, 1, 30), dt.datetime(2026, 11, 1, 13, 0)),
    # Outside the window: unchanged.
    (dt.datetime(2026, 3, 8, 9, 15), dt.datetime(2026, 3, 8, 13, 15)),
])
def test_a_send_due_in_quiet_hours_waits_for_their_local_end_across_daylight_saving_changes(acme, acme_whatsapp, event_local, expected_utc):
    acme.timezone = "America/New_York"
    acme.save()
    make_rule(acme, acme_whatsapp, quiet_hours_start=dt.time(21, 0), quiet_hours_end=dt.time(8, 0))
    lead = make_lead(acme)

    planning.plan_sends(lead, "lead_created", "event:1", at=event_local.replace(tzinfo=NEW_YORK))

    assert MessageSend.objects.get().due_at == expected_utc.replace(tzinfo=UTC)


def test_a_quiet_window_within_one_day_moves_a_send_to_its_end():
    zone = ZoneInfo("Europe/Madrid")
    at = dt.datetime(2026, 3, 29, 13, 30, tzinfo=zone)  # the day Madrid moves to summer time
    assert planning.out_of_quiet_hours(at, dt.time(13, 0), dt.time(16, 0), zone) == dt.datetime(2026, 3, 29, 14, 0, tzinfo=UTC)


# -- re-checks before each send ------------------------------------------------------------------------------------
def test_a_paused_template_skips_the_send_with_its_reason_and_nothing_reaches_meta(acme, acme_whatsapp, meta_sandbox):
    make_rule(acme, acme_whatsapp)
    lead = make_lead(acme)
    planning.plan_for_event(new_lead_event(lead, 1))
    MessageTemplate.objects.filter(pk=acme_whatsapp.pk).update(status="PAUSED")

    assert one_pass() == "1 claimed: 1 skipped"
    assert MessageSend.objects.values_list("status", "skip_reason").get() == ("skipped", "template_not_approved")
    assert template_messages(meta_sandbox) == []


def test_the_daily_cap_per_lead_counts_todays_automatic_messages_in_the_accounts_timezone(acme, acme_whatsapp, meta_sandbox):
    welcome = make_rule(acme, acme_whatsapp, name="Welcome", max_sends_per_lead_per_day=2, allow_reentry=True)
    capped, yesterday_only = make_lead(acme), make_lead(acme)
    now = timezone.now()
    zone = planning.account_zone(acme)
    local_midnight = dt.datetime.combine(now.astimezone(zone).date(), dt.time.min, tzinfo=zone)
    history = [(capped, local_midnight + dt.timedelta(seconds=1)), (capped, now),
               (yesterday_only, local_midnight - dt.timedelta(seconds=1)), (yesterday_only, now)]
    for n, (lead, sent_at) in enumerate(history):
        planning.plan_sends(lead, "lead_created", f"earlier:{n}", at=now - dt.timedelta(days=1), rules=[welcome])
        MessageSend.objects.filter(trigger_key=f"earlier:{n}").update(status="delivered", sent_at=sent_at)
    for lead in (capped, yesterday_only):
        planning.plan_for_event(new_lead_event(lead, 500 + lead.pk))

    one_pass()

    assert dict(MessageSend.objects.filter(trigger_key__startswith="event:").values_list("lead_id", "skip_reason")) == {
        capped.pk: "cap_reached", yesterday_only.pk: ""}
    assert [m["to"] for m in template_messages(meta_sandbox)] == [yesterday_only.phone[1:]]


def test_a_won_opportunity_ends_the_leads_pending_follow_ups(acme, acme_whatsapp, meta_sandbox):
    make_rule(acme, acme_whatsapp)
    lead = make_lead(acme)
    planning.plan_for_event(new_lead_event(lead, 1))
    make_opportunity(lead, stage="won")

    one_pass()

    assert MessageSend.objects.values_list("status", "skip_reason").get() == ("skipped", "opportunity_won")


def test_winning_an_opportunity_ends_the_leads_pending_follow_ups_at_once_not_when_they_fall_due(
        acme, alice, acme_whatsapp, django_capture_on_commit_callbacks):
    make_rule(acme, acme_whatsapp, name="Follow-up", delays=(60 * 24,))
    make_rule(acme, acme_whatsapp, name="Nurture regardless", delays=(60 * 48,), exit_on_won=False,
              conditions={"lead_statuses": ["new"]})
    make_rule(acme, acme_whatsapp, trigger="opportunity_won", name="Thank you", delays=(60,))
    lead = make_lead(acme)
    planning.plan_sends(lead, "lead_created", "event:1", at=timezone.now())
    opportunity = make_opportunity(lead, stage="negotiation", amount=1500)

    with django_capture_on_commit_callbacks(execute=True):
        services.update_opportunity(opportunity, actor=alice, stage="won")

    assert sorted(MessageSend.objects.values_list("rule_name", "status", "skip_reason")) == [
        ("Follow-up", "skipped", "opportunity_won"), ("Nurture regardless", "queued", ""), ("Thank you", "queued", "")]


def test_a_lead_without_a_phone_or_an_account_without_a_channel_is_skipped_with_the_reason(acme, acme_whatsapp):
    make_rule(acme, acme_whatsapp)
    no_phone = make_lead(acme, phone=None)
    planning.plan_for_event(new_lead_event(no_phone, 1))
    one_pass()
    acme_whatsapp.account.whatsappchannel_set.all().delete() if hasattr(acme, "whatsappchannel_set") else None
    from meta_oauth.models import WhatsAppChannel
    WhatsAppChannel.objects.filter(account=acme).delete()
    with_phone = make_lead(acme)
    planning.plan_for_event(new_lead_event(with_phone, 2))
    one_pass()

    assert sorted(MessageSend.objects.values_list("lead_id", "status", "skip_reason")) == [
        (no_phone.pk, "skipped", "no_phone"), (with_phone.pk, "skipped", "no_channel")]


# -- Meta's error codes ----------------------------------------------------------------------------------------------
def test_error_131050_opts_the_lead_out_fails_the_send_and_skips_its_other_pending_sends(acme, acme_whatsapp, meta_sandbox):
    make_rule(acme, acme_whatsapp, delays=(0, 60))
    lead = make_lead(acme)
    planning.plan_for_event(new_lead_event(lead, 1))
    meta_sandbox.fail_next(1, status=400, code=131050, message="User has stopped marketing messages", path_contains="/messages")

    one_pass()

    lead.refresh_from_db()
    assert lead.opted_out_at is not None
    assert sorted(MessageSend.objects.values_list("status", "skip_reason", "error_code")) == [
        ("failed", "", 131050), ("skipped", "opted_out", None)]


def test_a_template_error_fails_the_send_and_flags_the_rule(acme, acme_whatsapp, meta_sandbox):
    rule = make_rule(acme, acme_whatsapp)
    lead = make_lead(acme)
    planning.plan_for_event(new_lead_event(lead, 1))
    meta_sandbox.fail_next(1, status=400, code=132001, message="Template name does not exist in the translation",
                           path_contains="/messages")

    one_pass()

    rule.refresh_from_db()
    assert MessageSend.objects.values_list("status", "error_code").get() == ("failed", 132001)
    assert rule.flagged_reason == "Meta refused template seguimiento_lead_v1 (code 132001): Template name does not exist in the translation"
    assert (counters_by("rule_id", [rule.pk])[rule.pk]["failed"],
            counters_by("template_id", [acme_whatsapp.pk])[acme_whatsapp.pk]["failed"]) == (1, 1)


@pytest.mark.parametrize(("code", "status", "at_least"), [(130429, 400, 1), (131056, 400, 6), (None, 503, 1), (4, 400, 1)])
def test_throughput_and_transient_errors_put_the_send_back_in_the_queue_for_later(acme, acme_whatsapp, meta_sandbox, code, status, at_least):
    make_rule(acme, acme_whatsapp)
    lead = make_lead(acme)
    planning.plan_for_event(new_lead_event(lead, 1))
    meta_sandbox.fail_next(1, status=status, code=code, path_contains="/messages")
    before = timezone.now()

    assert one_pass() == "1 claimed: 1 retry"
    send = MessageSend.objects.get()
    assert (send.status, send.attempts, send.claimed_at) == ("queued", 1, None)
    assert send.next_attempt_at >= before + dt.timedelta(seconds=at_least)
    assert template_messages(meta_sandbox) == []

    MessageSend.objects.update(next_attempt_at=timezone.now())  # its time has come
    from automation.engine.models import ThroughputSlot
    ThroughputSlot.objects.all().delete()
    one_pass()
    assert MessageSend.objects.get().status == "sent"
    assert len(template_messages(meta_sandbox)) == 1


def test_a_rejected_token_marks_the_connection_for_reconnecting_and_keeps_the_send_queued(acme, acme_whatsapp, meta_sandbox):
    from meta_oauth.models import MetaConnection

    make_rule(acme, acme_whatsapp)
    planning.plan_for_event(new_lead_event(make_lead(acme), 1))
    meta_sandbox.expire_token()

    one_pass()

    assert MetaConnection.objects.get(account=acme).status == "needs_reconnect"
    assert MessageSend.objects.values_list("status", "attempts").get() == ("queued", 1)


def test_an_undeliverable_number_fails_the_send_for_good(acme, acme_whatsapp, meta_sandbox):
    make_rule(acme, acme_whatsapp)
    planning.plan_for_event(new_lead_event(make_lead(acme), 1))
    meta_sandbox.fail_next(1, status=400, code=131026, message="Message undeliverable", path_contains="/messages")

    one_pass()
    one_pass()

    assert MessageSend.objects.values_list("status", "error_code", "error_title").get() == ("failed", 131026, "Message undeliverable")


def test_a_send_whose_answer_never_came_is_unknown_and_never_sent_again(acme, acme_whatsapp, meta_sandbox, settings):
    settings.META_HTTP_TIMEOUT = 0.5
    make_rule(acme, acme_whatsapp)
    planning.plan_for_event(new_lead_event(make_lead(acme), 1))
    meta_sandbox.slow_next(1, seconds=1.5, path_contains="/messages")

    assert one_pass() == "1 claimed: 1 unknown"
    one_pass()
    reconcile()

    send = MessageSend.objects.get()
    assert (send.status, send.meta_message_id) == ("unknown", "")
    # A day later nobody confirmed it: failed as unconfirmed, still never re-sent.
    MessageSend.objects.update(claimed_at=timezone.now() - dt.timedelta(hours=25))
    reconcile()
    assert MessageSend.objects.values_list("status", "error_title").get() == ("failed", "unconfirmed")
    # ... and it counts as failed for its rule and its template, like a failed status does.
    assert (counters_by("rule_id", [send.rule_id])[send.rule_id]["failed"],
            counters_by("template_id", [send.template_id])[send.template_id]["failed"]) == (1, 1)


def test_the_command_runs_one_pass_for_an_account_and_prints_one_summary_line(acme, acme_whatsapp, meta_sandbox, capsys):
    make_rule(acme, acme_whatsapp)
    planning.plan_for_event(new_lead_event(make_lead(acme), 1))

    call_command("run_automation", "--account", "acme", "--seconds", "5")

    assert capsys.readouterr().out.splitlines()[-1] == "acme: 0 no_reply send(s) planned; 1 claimed: 1 sent"
    assert len(template_messages(meta_sandbox)) == 1


# -- no_reply ----------------------------------------------------------------------------------------------------------
def test_the_no_reply_scan_follows_up_leads_who_did_not_answer_the_first_message(acme, acme_whatsapp):
    welcome = make_rule(acme, acme_whatsapp, name="Welcome")
    follow_up = make_rule(acme, acme_whatsapp, trigger="no_reply", no_reply_hours=24, name="Follow-up", delays=(0,))
    silent, answered, recent = make_lead(acme), make_lead(acme), make_lead(acme)
    now = timezone.now()
    for lead, sent_hours_ago in ((silent, 30), (answered, 30), (recent, 2)):
        planning.plan_sends(lead, "lead_created", f"event:{lead.pk}", at=now - dt.timedelta(hours=sent_hours_ago), rules=[welcome])
    MessageSend.objects.update(status="delivered", sent_at=now - dt.timedelta(hours=30))
    MessageSend.objects.filter(lead=recent).update(sent_at=now - dt.timedelta(hours=2))
    Lead.objects.filter(pk=answered.pk).update(last_inbound_at=now - dt.timedelta(hours=20))

    assert planning.plan_no_reply(acme, now=now) == 1
    assert planning.plan_no_reply(acme, now=now) == 0
    first = MessageSend.objects.get(lead=silent, rule=welcome)
    assert list(MessageSend.objects.filter(rule=follow_up).values_list("lead_id", "trigger_key")) == [
        (silent.pk, f"no_reply:{follow_up.pk}:{silent.pk}:{first.pk}")]
