"""Delivery statuses, opt-outs and replies arriving as signed Meta webhooks."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from automation.engine import planning
from automation.engine.passes import run_pass
from automation.engine.statuses import advance
from automation.models import AutomationRule, MessageSend, MessageTemplate
from automation.services.counters import counters_by
from crm_marketing import events
from crm_marketing.models import Lead
from crm_marketing.sandbox.webhooks import plain_message_payload, status_event, statuses_payload, user_preferences_payload
from crm_marketing.webhook_models import WebhookEvent
from tests.conftest import make_lead
from tests.fixtures.automation import _no_second_guard, acme_whatsapp, make_rule  # noqa: F401
from tests.fixtures.webhooks import post_signed


def deliver(client, payload, capture) -> None:
    with capture(execute=True):
        assert post_signed(client, payload).status_code == 200


@pytest.fixture
def sent(acme, acme_whatsapp, meta_sandbox) -> MessageSend:
    """One welcome sent to María through the sandbox."""
    make_rule(acme, acme_whatsapp, name="Welcome")
    lead = make_lead(acme, first_name="María", phone="+5491155550001")
    planning.plan_for_event(events.DomainEvent(events.LEAD_CREATED, acme.pk, {"lead_id": lead.pk}, id=1))
    run_pass(budget_seconds=5)
    return MessageSend.objects.get(lead=lead)


def counters() -> tuple:
    """(sent, delivered, read, failed) of the template and of the rule, as the API and admin show them."""
    template, rule = MessageTemplate.objects.get(), AutomationRule.objects.get()
    figures = ("sent", "delivered", "read", "failed")
    return (tuple(counters_by("template_id", [template.pk])[template.pk][name] for name in figures),
            tuple(counters_by("rule_id", [rule.pk])[rule.pk][name] for name in figures))


def test_statuses_out_of_order_and_repeated_move_a_send_forward_only_and_count_each_step_once(
        client, sent, django_capture_on_commit_callbacks):
    wamid, to, ours = sent.meta_message_id, "5491155550001", str(sent.pk)
    deliver(client, statuses_payload([status_event(wamid, "read", to, ours, timestamp=1795001200)]), django_capture_on_commit_callbacks)
    deliver(client, statuses_payload([status_event(wamid, "delivered", to, ours, timestamp=1795001100),
                                      status_event(wamid, "sent", to, ours, timestamp=1795001000)]), django_capture_on_commit_callbacks)
    deliver(client, statuses_payload([status_event(wamid, "read", to, ours, timestamp=1795001300),
                                      status_event(wamid, "failed", to, ours, error_code=131026)]), django_capture_on_commit_callbacks)

    sent.refresh_from_db()
    assert (sent.status, sent.pricing_category, sent.billable, sent.error_code) == ("failed", "marketing", True, 131026)
    assert sent.read_at.timestamp() == 1795001200 and sent.delivered_at.timestamp() == 1795001200
    assert counters() == ((1, 1, 1, 1), (1, 1, 1, 1))
    assert list(WebhookEvent.objects.order_by("id").values_list("status", "result")) == [
        ("processed", f"send {sent.pk} read"),
        ("processed", f"send {sent.pk} stays read; send {sent.pk} stays read"),
        ("processed", f"send {sent.pk} stays read; send {sent.pk} failed"),
    ]


def test_a_redelivered_status_webhook_changes_nothing_twice(client, sent, django_capture_on_commit_callbacks):
    payload = statuses_payload([status_event(sent.meta_message_id, "delivered", "5491155550001", str(sent.pk))])
    deliver(client, payload, django_capture_on_commit_callbacks)
    deliver(client, payload, django_capture_on_commit_callbacks)

    assert MessageSend.objects.get().status == "delivered"
    assert counters() == ((1, 1, 0, 0), (1, 1, 0, 0))


def test_a_status_that_arrives_before_the_send_answer_is_stored_is_kept_when_the_answer_comes(acme, acme_whatsapp, client, django_capture_on_commit_callbacks):
    make_rule(acme, acme_whatsapp)
    lead = make_lead(acme, phone="+5491155550009")
    planning.plan_for_event(events.DomainEvent(events.LEAD_CREATED, acme.pk, {"lead_id": lead.pk}, id=1))
    send = MessageSend.objects.get()
    MessageSend.objects.filter(pk=send.pk).update(status="sending")  # the POST is in flight

    deliver(client, statuses_payload([status_event("wamid.EARLY", "delivered", "5491155550009", str(send.pk))]),
            django_capture_on_commit_callbacks)
    late_answer = advance(send.pk, "sent", wamid="wamid.EARLY")  # what the sender does when Meta's answer lands

    send.refresh_from_db()
    assert (late_answer.moved, send.status, send.meta_message_id) == (False, "delivered", "wamid.EARLY")
    assert counters() == ((1, 1, 0, 0), (1, 1, 0, 0))


def test_a_status_for_an_unknown_send_settles_it_by_its_wamid(client, sent, django_capture_on_commit_callbacks):
    MessageSend.objects.filter(pk=sent.pk).update(status="unknown")
    deliver(client, statuses_payload([status_event(sent.meta_message_id, "delivered", "5491155550001")]),
            django_capture_on_commit_callbacks)

    assert MessageSend.objects.get().status == "delivered"


def test_a_status_for_another_accounts_send_or_an_unknown_number_changes_nothing(
        client, sent, globex, django_capture_on_commit_callbacks):
    from tests.fixtures.automation import make_channel

    make_channel(globex, phone_number_id="1300999")
    deliver(client, statuses_payload([status_event(sent.meta_message_id, "read", "5491155550001", str(sent.pk))],
                                     phone_number_id="1300999"), django_capture_on_commit_callbacks)
    deliver(client, statuses_payload([status_event(sent.meta_message_id, "delivered", "5491155550001", str(sent.pk))],
                                     phone_number_id="1300404"), django_capture_on_commit_callbacks)

    assert MessageSend.objects.get().status == "sent"
    assert list(WebhookEvent.objects.order_by("id").values_list("status", "error")) == [
        ("ignored", "1 status(es) for messages that are not automation sends"),
        ("ignored", "no account has the WhatsApp phone number id 1300404"),
    ]


def test_a_failed_status_with_131050_opts_the_lead_out(client, sent, django_capture_on_commit_callbacks):
    deliver(client, statuses_payload([status_event(sent.meta_message_id, "failed", "5491155550001", str(sent.pk),
                                                   error_code=131050, error_title="User has stopped marketing messages")]),
            django_capture_on_commit_callbacks)

    send = MessageSend.objects.select_related("lead").get()
    assert (send.status, send.error_code, send.error_title) == ("failed", 131050, "User has stopped marketing messages")
    assert send.lead.opted_out_at is not None


def test_stop_by_webhook_opts_the_lead_out_and_ends_its_pending_sends_and_resume_lets_new_ones_go(
        acme, acme_whatsapp, meta_sandbox, client, django_capture_on_commit_callbacks):
    make_rule(acme, acme_whatsapp, delays=(60,))
    lead = make_lead(acme, phone="+5491155550001")
    planning.plan_for_event(events.DomainEvent(events.LEAD_CREATED, acme.pk, {"lead_id": lead.pk}, id=1))

    deliver(client, user_preferences_payload("5491155550001", "stop"), django_capture_on_commit_callbacks)
    lead.refresh_from_db()
    assert lead.opted_out_at is not None
    assert MessageSend.objects.values_list("status", "skip_reason").get() == ("skipped", "opted_out")

    deliver(client, user_preferences_payload("5491155550001", "resume", timestamp=1795009999), django_capture_on_commit_callbacks)
    assert Lead.objects.get(pk=lead.pk).opted_out_at is None


def test_a_reply_from_the_lead_ends_its_pending_follow_ups_of_rules_that_exit_on_reply(
        acme, acme_whatsapp, meta_sandbox, client, django_capture_on_commit_callbacks):
    make_rule(acme, acme_whatsapp, name="Follow-up", delays=(60 * 24,))
    make_rule(acme, acme_whatsapp, trigger="lead_created", name="Reminder regardless", delays=(60 * 48,),
              exit_on_reply=False, conditions={"lead_statuses": ["new"]})
    lead = make_lead(acme, phone="+5491155550001")
    planning.plan_sends(lead, "lead_created", "event:1", at=timezone.now() - dt.timedelta(minutes=5))

    deliver(client, plain_message_payload("5491155550001", "María", "Sí, llamame"), django_capture_on_commit_callbacks)

    assert sorted(MessageSend.objects.values_list("rule_name", "status", "skip_reason")) == [
        ("Follow-up", "skipped", "lead_replied"), ("Reminder regardless", "queued", "")]
