"""A drain processes its batch of webhook events together: automation's statuses handler takes all of a
batch's WhatsApp statuses in one call (a query for the channels, one or two for the sends, one UPDATE per
group of sends moving alike) and the outcomes and events are written with one statement each, with what
one event at a time gave: every status applied once, forward only, within the channel's account.

The events are stored as the intake stores them; the drain runs here, where a worker would run its task."""
from __future__ import annotations

import datetime as dt

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automation import handlers
from automation.models import MessageSend, MessageTemplate
from automation.services.counters import counters_by
from crm_marketing import tasks, webhook_processing, webhooks
from crm_marketing.sandbox.webhooks import status_event, statuses_payload
from crm_marketing.webhook_models import WebhookEvent, WebhookHandlerOutcome
from marketing.handlers import handle_messages
from tests.conftest import make_lead
from tests.fixtures.automation import _no_second_guard, acme_whatsapp, make_channel, make_rule  # noqa: F401

AT = 1795001000  # Meta's timestamp of the statuses (epoch seconds)
MALLORY_PHONE_NUMBER_ID = "1300999"


def sends_sent(account, template, count: int) -> list[MessageSend]:
    """``count`` welcomes the engine already posted to Meta, each to its own lead (status sent, with a wamid)."""
    rule, now = make_rule(account, template, name="Welcome"), timezone.now()
    step = rule.steps.get()
    leads = [make_lead(account, first_name=f"Lead {n}", phone=f"+54911555{n:05d}") for n in range(count)]
    return MessageSend.objects.bulk_create([
        MessageSend(account=account, rule=rule, step=step, lead=lead, template=template, trigger_type="lead_created",
                    trigger_key=f"batch:{n}", rule_name=rule.name, template_name=template.name, status="sent",
                    meta_message_id=f"wamid.BATCH{n}", due_at=now, sent_at=now) for n, lead in enumerate(leads)])


def receive(send: MessageSend, status: str, *, at: int = AT, **fields) -> None:
    """Meta's webhook with one status of ``send``, stored as the intake stores it (the drain is not run)."""
    webhooks.store_changes(statuses_payload(status_event(send.meta_message_id, status, send.lead.phone.lstrip("+"),
                                                         str(send.pk), timestamp=at, **fields)))


def receive_from(phone_number_id: str, send: MessageSend, status: str) -> None:
    """The same from the WhatsApp number ``phone_number_id``."""
    webhooks.store_changes(statuses_payload(status_event(send.meta_message_id, status, send.lead.phone.lstrip("+"),
                                                         str(send.pk), timestamp=AT), phone_number_id=phone_number_id))


def events() -> list[tuple[str, str, str]]:
    """(status, result, error) of every stored event, as the admin lists them (oldest first)."""
    return list(WebhookEvent.objects.order_by("id").values_list("status", "result", "error"))


def template_figures() -> dict:
    template = MessageTemplate.objects.get()
    figures = counters_by("template_id", [template.pk])[template.pk]
    return {name: figures[name] for name in ("sent", "delivered", "read", "failed")}


@pytest.fixture
def lost_connection_once():
    """Automation's statuses batch form loses the database connection on its first call, then works."""
    calls = []

    def many(events):
        calls.append(len(events))
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return handlers.handle_statuses_many(events)

    webhooks.register_handler("messages", handlers.handle_statuses, many=many)
    yield calls
    webhooks.register_handler("messages", handlers.handle_statuses, many=handlers.handle_statuses_many)


def test_a_drain_of_twenty_statuses_of_twenty_sends_applies_each_once_with_a_few_queries(acme, acme_whatsapp):
    sends = sends_sent(acme, acme_whatsapp, 20)
    for send in sends:
        receive(send, "delivered")

    with CaptureQueriesContext(connection) as queries:
        summary = webhook_processing.drain_events()

    assert summary == "drained 20 webhook event(s): 20 processed"
    assert len(queries) <= 16  # savepoints included; one event at a time took about 10 per event
    assert set(MessageSend.objects.values_list("status", "delivered_at", "pricing_category", "billable")) == {
        ("delivered", dt.datetime.fromtimestamp(AT, tz=dt.timezone.utc), "marketing", True)}
    assert template_figures() == {"sent": 20, "delivered": 20, "read": 0, "failed": 0}
    assert events() == [("processed", f"send {send.pk} delivered", "") for send in sends]
    assert set(WebhookEvent.objects.values_list("account", "attempts")) == {(acme.pk, 1)}
    assert sorted(set(WebhookHandlerOutcome.objects.values_list("handler", "status", "attempts"))) == [
        ("automation.handlers.handle_statuses", "processed", 1), ("marketing.handlers.handle_messages", "skipped", 1)]
    assert WebhookHandlerOutcome.objects.count() == 40


def test_marketing_looks_nothing_up_for_a_change_that_only_carries_statuses(acme, acme_whatsapp):
    send, = sends_sent(acme, acme_whatsapp, 1)
    receive(send, "delivered")

    event = WebhookEvent.objects.get()

    with CaptureQueriesContext(connection) as queries:
        assert handle_messages(event) is None

    assert len(queries) == 0


def test_delivered_and_read_of_one_send_in_one_batch_end_at_read_with_both_times(acme, acme_whatsapp):
    maria, ana = sends_sent(acme, acme_whatsapp, 2)
    receive(maria, "delivered", at=AT + 10)
    receive(maria, "read", at=AT + 20)
    receive(ana, "read", at=AT + 30)
    receive(ana, "delivered", at=AT + 25)  # Meta's statuses may arrive out of order

    webhook_processing.drain_events()

    maria.refresh_from_db()
    ana.refresh_from_db()
    assert (maria.status, maria.delivered_at.timestamp(), maria.read_at.timestamp()) == ("read", AT + 10, AT + 20)
    assert (ana.status, ana.delivered_at.timestamp(), ana.read_at.timestamp()) == ("read", AT + 30, AT + 30)
    assert events() == [("processed", f"send {maria.pk} delivered", ""), ("processed", f"send {maria.pk} read", ""),
                        ("processed", f"send {ana.pk} read", ""), ("processed", f"send {ana.pk} stays read", "")]
    assert template_figures() == {"sent": 2, "delivered": 2, "read": 2, "failed": 0}


def test_a_status_from_mallorys_channel_naming_an_acme_send_is_not_applied(acme, acme_whatsapp, mallory, globex):
    acme_send, other = sends_sent(acme, acme_whatsapp, 2)
    make_channel(globex, phone_number_id=MALLORY_PHONE_NUMBER_ID)
    receive_from(MALLORY_PHONE_NUMBER_ID, acme_send, "read")  # acme's id and wamid, from globex's number
    receive(other, "delivered")

    webhook_processing.drain_events()

    assert list(MessageSend.objects.order_by("pk").values_list("status", flat=True)) == ["sent", "delivered"]
    assert events() == [("ignored", "", "1 status(es) for messages that are not automation sends"),
                        ("processed", f"send {other.pk} delivered", "")]
    assert list(WebhookEvent.objects.order_by("id").values_list("account", flat=True)) == [globex.pk, acme.pk]


def test_one_event_whose_channel_is_unknown_is_ignored_while_the_rest_of_its_batch_is_processed(acme, acme_whatsapp):
    first, lost, last = sends_sent(acme, acme_whatsapp, 3)
    receive(first, "delivered")
    receive_from("1300404", lost, "delivered")
    receive(last, "read")

    webhook_processing.drain_events()

    assert list(MessageSend.objects.order_by("pk").values_list("status", flat=True)) == ["delivered", "sent", "read"]
    assert events() == [("processed", f"send {first.pk} delivered", ""),
                        ("ignored", "", "no account has the WhatsApp phone number id 1300404"),
                        ("processed", f"send {last.pk} read", "")]


def test_a_failed_status_with_131050_in_a_batch_opts_the_lead_out(acme, acme_whatsapp):
    delivered, stopped = sends_sent(acme, acme_whatsapp, 2)
    receive(delivered, "delivered")
    receive(stopped, "failed", error_code=131050, error_title="User has stopped marketing messages")

    webhook_processing.drain_events()

    rows = MessageSend.objects.select_related("lead").order_by("pk")
    assert [(s.status, s.error_code, s.error_title, s.lead.opted_out_at is not None) for s in rows] == [
        ("delivered", None, "", False), ("failed", 131050, "User has stopped marketing messages", True)]
    assert events() == [("processed", f"send {delivered.pk} delivered", ""), ("processed", f"send {stopped.pk} failed", "")]


def test_a_status_whose_error_code_cannot_be_stored_fails_alone_and_the_rest_of_its_batch_is_applied(acme, acme_whatsapp):
    first, odd, last = sends_sent(acme, acme_whatsapp, 3)
    receive(first, "delivered")
    receive(odd, "failed", error_code=2**64)  # no integer column holds it
    receive(last, "delivered")

    webhook_processing.drain_events()

    assert list(MessageSend.objects.order_by("pk").values_list("status", flat=True)) == ["delivered", "sent", "delivered"]
    (_, _, error), = [row for row in events() if row[0] == "failed"]
    assert error in ("DataError: integer out of range", "OverflowError: Python int too large to convert to SQLite INTEGER")
    assert events() == [("processed", f"send {first.pk} delivered", ""), ("failed", "", error),
                        ("processed", f"send {last.pk} delivered", "")]


def test_a_batch_whose_statuses_lose_the_database_connection_is_failed_retried_later_and_none_is_lost(
        acme, acme_whatsapp, lost_connection_once):
    sends = sends_sent(acme, acme_whatsapp, 3)
    for send in sends:
        receive(send, "delivered")

    assert webhook_processing.drain_events() == "drained 3 webhook event(s): 3 failed"

    assert set(MessageSend.objects.values_list("status", flat=True)) == {"sent"}
    failed = WebhookEvent.objects.order_by("id")
    assert {(e.status, e.error, e.next_attempt_at is not None) for e in failed} == {
        ("failed", "database error, retried: server closed the connection unexpectedly", True)}

    WebhookEvent.objects.update(next_attempt_at=timezone.now())  # their retry time has come
    assert tasks.retry_webhook_events() == "queued 3 webhook event(s)"

    assert set(MessageSend.objects.values_list("status", flat=True)) == {"delivered"}
    assert events() == [("processed", f"send {send.pk} delivered", "") for send in sends]
    assert sorted(set(WebhookHandlerOutcome.objects.values_list("handler", "status", "attempts"))) == [
        ("automation.handlers.handle_statuses", "processed", 2), ("marketing.handlers.handle_messages", "skipped", 1)]
    assert lost_connection_once == [3]  # the retry sweep runs each event on its own, through handle_statuses


def test_an_outcome_of_an_earlier_attempt_is_updated_when_the_admin_puts_the_event_back_not_duplicated(
        acme, acme_whatsapp, lost_connection_once):
    sends = sends_sent(acme, acme_whatsapp, 2)
    for send in sends:
        receive(send, "delivered")
    webhook_processing.drain_events()
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"failed"}

    WebhookEvent.objects.update(status=WebhookEvent.Status.RECEIVED, next_attempt_at=None)  # the admin re-queues them
    assert webhook_processing.drain_events() == "drained 2 webhook event(s): 2 processed"

    assert set(MessageSend.objects.values_list("status", flat=True)) == {"delivered"}
    assert list(WebhookHandlerOutcome.objects.order_by("event_id", "handler").values_list("handler", "status", "result", "error", "attempts")) == [
        outcome for send in sends for outcome in (
            ("automation.handlers.handle_statuses", "processed", f"send {send.pk} delivered", "", 2),
            ("marketing.handlers.handle_messages", "skipped", "", "", 1))]
    assert lost_connection_once == [2, 2]
