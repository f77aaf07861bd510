"""Webhook events are processed by drain tasks: a burst of deliveries queues one task while none is
waiting to start, and every status is still applied exactly once.

Here the tasks really go through django-q2's ORM broker (not inline) and a worker's part is played by
``run_queued_tasks``, so the test can count what was queued."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django_q.conf import Conf

from automation.models import MessageSend, MessageTemplate
from automation.services.counters import counters_by
from crm_marketing import webhooks
from crm_marketing.sandbox.webhooks import status_event, statuses_payload
from crm_marketing.webhook_models import WebhookEvent
from tests.conftest import make_lead
from tests.fixtures.automation import _no_second_guard, acme_whatsapp, make_rule  # noqa: F401
from tests.fixtures.queueing import queued, run_queued_tasks  # noqa: F401
from tests.fixtures.webhooks import post_signed

TO = "5491155550001"


def sends_sent(acme, template, count: int) -> list[MessageSend]:
    """``count`` welcomes the engine already posted to Meta (status sent, each with its wamid)."""
    rule = make_rule(acme, template, name="Welcome")
    lead, step, now = make_lead(acme, first_name="María", phone=f"+{TO}"), rule.steps.get(), timezone.now()
    return MessageSend.objects.bulk_create([
        MessageSend(account=acme, rule=rule, step=step, lead=lead, template=template, trigger_type="lead_created",
                    trigger_key=f"burst:{n}", rule_name=rule.name, template_name=template.name, status="sent",
                    meta_message_id=f"wamid.BURST{n}", due_at=now, sent_at=now) for n in range(count)])


def template_delivered() -> int:
    """The delivered figure the hub shows for the template."""
    template = MessageTemplate.objects.get()
    return counters_by("template_id", [template.pk])[template.pk]["delivered"]


def deliver(client, send: MessageSend, capture) -> None:
    with capture(execute=True):
        answer = post_signed(client, statuses_payload(status_event(send.meta_message_id, "delivered", TO, str(send.pk))))
    assert answer.status_code == 200


def test_thirty_statuses_in_a_burst_queue_one_drain_that_applies_each_once(
        client, acme, acme_whatsapp, queued, django_capture_on_commit_callbacks):
    sends = sends_sent(acme, acme_whatsapp, 30)
    for send in sends:
        deliver(client, send, django_capture_on_commit_callbacks)
    deliver(client, sends[0], django_capture_on_commit_callbacks)  # Meta delivers one of them again

    ran = run_queued_tasks()

    assert ran == ["crm_marketing.tasks.drain_webhook_events"]
    assert set(MessageSend.objects.values_list("status", flat=True)) == {"delivered"}
    assert template_delivered() == 30
    assert set(WebhookEvent.objects.values_list("status", "attempts")) == {("processed", 1)}
    assert WebhookEvent.objects.count() == 30


def test_a_status_arriving_after_a_drain_started_gets_a_drain_of_its_own(
        client, acme, acme_whatsapp, queued, django_capture_on_commit_callbacks):
    first, second = sends_sent(acme, acme_whatsapp, 2)
    deliver(client, first, django_capture_on_commit_callbacks)
    assert run_queued_tasks() == ["crm_marketing.tasks.drain_webhook_events"]

    deliver(client, second, django_capture_on_commit_callbacks)

    assert run_queued_tasks() == ["crm_marketing.tasks.drain_webhook_events"]
    assert set(MessageSend.objects.values_list("status", flat=True)) == {"delivered"}


def test_a_drain_that_runs_out_of_time_hands_the_rest_to_a_new_drain(
        client, acme, acme_whatsapp, queued, settings, django_capture_on_commit_callbacks):
    settings.WEBHOOK_DRAIN_BATCH = 2
    settings.WEBHOOK_DRAIN_SECONDS = 0  # every batch ends past the deadline: one batch per task
    sends = sends_sent(acme, acme_whatsapp, 5)
    for send in sends:
        deliver(client, send, django_capture_on_commit_callbacks)

    ran = run_queued_tasks()

    assert ran == ["crm_marketing.tasks.drain_webhook_events"] * 3  # 2 + 2 + 1 events
    assert template_delivered() == 5
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_without_a_shared_cache_every_delivery_queues_its_drain_and_the_later_ones_find_nothing_left(
        client, acme, acme_whatsapp, settings, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(Conf, "SYNC", False)
    settings.CACHE_IS_SHARED = False  # the embedded default: web and qcluster would not see one flag
    for send in sends_sent(acme, acme_whatsapp, 3):
        deliver(client, send, django_capture_on_commit_callbacks)

    ran = run_queued_tasks()

    assert ran == ["crm_marketing.tasks.drain_webhook_events"] * 3
    assert template_delivered() == 3
    assert list(WebhookEvent.objects.values_list("attempts", flat=True)) == [1, 1, 1]


def test_a_drain_that_dies_on_one_event_gives_the_rest_of_its_batch_to_the_next_drain(
        client, acme, acme_whatsapp, queued, django_capture_on_commit_callbacks):
    sends = sends_sent(acme, acme_whatsapp, 4)
    for send in sends:
        deliver(client, send, django_capture_on_commit_callbacks)
    def worker_killed_on_the_second(event):
        if event.value["statuses"][0]["id"] == sends[1].meta_message_id:
            raise SystemExit("the worker is stopped in the middle of the batch")

    webhooks.register_handler("messages", worker_killed_on_the_second)
    try:
        with pytest.raises(SystemExit):
            run_queued_tasks()
    finally:
        webhooks.unregister_handler("messages", worker_killed_on_the_second)

    by_send = dict(WebhookEvent.objects.values_list("dedupe_key", "status"))
    assert [by_send[f"status:{s.meta_message_id}:delivered"] for s in sends] == ["processed", "processing", "received", "received"]
    deliver(client, sends[0], django_capture_on_commit_callbacks)  # a redelivery stores nothing and queues nothing
    webhooks.request_drain()  # the next delivery's drain
    assert run_queued_tasks() == ["crm_marketing.tasks.drain_webhook_events"]
    assert set(MessageSend.objects.values_list("status", flat=True)) == {"delivered"}  # the second's before the kill
    assert set(WebhookEvent.objects.exclude(dedupe_key__contains=sends[1].meta_message_id).values_list("attempts", flat=True)) == {1}


def test_events_a_killed_drain_left_processing_run_again_once_no_task_can_still_hold_them(client, acme, acme_whatsapp, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 120}  # a qcluster ends a task after 2 minutes
    sends = sends_sent(acme, acme_whatsapp, 2)
    for send in sends:  # stored, their drain never ran (its on-commit hook is not run here)
        post_signed(client, statuses_payload(status_event(send.meta_message_id, "delivered", TO, str(send.pk))))
    abandoned, running = WebhookEvent.objects.order_by("pk")
    WebhookEvent.objects.filter(pk=abandoned.pk).update(status="processing", claimed_at=timezone.now() - dt.timedelta(minutes=3, seconds=30))
    WebhookEvent.objects.filter(pk=running.pk).update(status="processing", claimed_at=timezone.now() - dt.timedelta(minutes=2, seconds=30))

    from crm_marketing.tasks import retry_webhook_events
    retry_webhook_events()  # the scheduled sweep; django-q2 runs what it queues inline in tests

    assert dict(WebhookEvent.objects.values_list("pk", "status")) == {abandoned.pk: "processed", running.pk: "processing"}
    assert dict(MessageSend.objects.values_list("pk", "status")) == {sends[0].pk: "delivered", sends[1].pk: "sent"}


def test_an_abandoned_event_whose_retry_task_was_lost_is_found_by_the_next_sweep(client, acme, acme_whatsapp):
    [send] = sends_sent(acme, acme_whatsapp, 1)
    post_signed(client, statuses_payload(status_event(send.meta_message_id, "delivered", TO, str(send.pk))))
    event = WebhookEvent.objects.get()
    WebhookEvent.objects.filter(pk=event.pk).update(status="processing", claimed_at=timezone.now() - dt.timedelta(hours=1))

    from crm_marketing.webhook_processing import due_event_ids, release_stuck
    release_stuck([event.pk])  # then the queue refuses the retry task (Redis down): nothing runs it

    assert due_event_ids(now=timezone.now() + dt.timedelta(minutes=5)) == [event.pk]
