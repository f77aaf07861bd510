"""New domain events are delivered by drain tasks: a burst of writes queues one drain while none is waiting to
start, each subscriber gets the burst in one call of its batch form, and still every subscriber gets every
event once, a failing one retried alone by the sweep.

alice's acme writes the leads; tasks go through django-q2's ORM broker and ``run_queued_tasks`` plays the worker."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.conf import Conf

from automation.engine import planning
from automation.models import MessageSend
from crm_marketing import event_drain, events, services
from crm_marketing.models import EventDelivery, Lead, OutboxEvent
from tests.fixtures.automation import _no_second_guard, acme_whatsapp, make_rule  # noqa: F401
from tests.fixtures.queueing import queued, run_queued_tasks  # noqa: F401
from tests.test_events_outbox import only_this_modules_subscribers, subscribed, subscriber  # noqa: F401

pytestmark = pytest.mark.django_db
DRAIN = "crm_marketing.tasks.drain_domain_events"


def batch_subscriber(name: str, *, fail_on: set[int] = frozenset(), batch_fails: bool = False):
    """A handler ``name`` with a batch form; ``.batches`` holds the lead ids of each batch call, ``.calls`` the one
    by one calls. The one-by-one form raises for the leads in ``fail_on``; the batch form raises if ``batch_fails``
    or any of its leads is in ``fail_on`` (after recording, so a rollback is visible)."""
    one = subscriber(name)
    one_by_one = one

    def handler(event):
        one_by_one(event)
        if event.payload["lead_id"] in fail_on:
            raise RuntimeError(f"{name} cannot take lead {event.payload['lead_id']}")

    def many(batch):
        handler.batches.append([e.payload["lead_id"] for e in batch])
        Lead.objects.filter(pk__in=[e.payload["lead_id"] for e in batch]).update(last_name=f"seen by {name}")
        if batch_fails or any(e.payload["lead_id"] in fail_on for e in batch):
            raise RuntimeError(f"{name}'s batch form is down")

    handler.__qualname__, handler.calls, handler.batches, handler.many = name, one.calls, [], many
    return handler


def subscribe_with_batch(name: str, handler) -> None:
    events.subscribe(name, handler, many=handler.many)


def write_leads(account, count: int, capture) -> list[Lead]:
    leads = []
    for n in range(count):
        with capture(execute=True):
            leads.append(services.create_lead(account, first_name=f"Lead {n}", phone=f"+54911555{n:05d}"))
    return leads


def test_thirty_leads_in_a_burst_queue_one_drain_that_hands_them_to_the_batch_form_in_one_call(
        acme, queued, django_capture_on_commit_callbacks):
    automation = batch_subscriber("automation")
    subscribe_with_batch(events.LEAD_CREATED, automation)
    try:
        leads = write_leads(acme, 30, django_capture_on_commit_callbacks)
        with CaptureQueriesContext(connection) as queries:
            ran = run_queued_tasks()
    finally:
        events.unsubscribe(events.LEAD_CREATED, automation)

    assert ran == [DRAIN]
    assert automation.batches == [[lead.pk for lead in leads]] and automation.calls == []
    assert set(Lead.objects.values_list("last_name", flat=True)) == {"seen by automation"}
    assert set(EventDelivery.objects.values_list("status", "attempts")) == {("delivered", 1)}
    assert EventDelivery.objects.count() == 30
    assert not OutboxEvent.objects.filter(delivered_at__isnull=True).exists()
    assert len([q for q in queries.captured_queries if "outboxevent" in q["sql"] or "eventdelivery" in q["sql"]]) <= 8


def test_a_failing_batch_form_is_rolled_back_and_the_events_go_one_by_one_the_failing_one_left_to_the_sweep(
        acme, queued, django_capture_on_commit_callbacks):
    leads_ids: set[int] = set()
    automation = batch_subscriber("automation", fail_on=leads_ids)
    audit = subscriber("audit_trail")  # no batch form: one event at a time
    subscribe_with_batch(events.LEAD_CREATED, automation)
    events.subscribe(events.LEAD_CREATED, audit)
    try:
        first, second, third = write_leads(acme, 3, django_capture_on_commit_callbacks)
        leads_ids.add(second.pk)
        run_queued_tasks()
        second_event = OutboxEvent.objects.get(payload__lead_id=second.pk)
        retry_at = EventDelivery.objects.get(event=second_event, subscriber__endswith="automation").next_attempt_at
        leads_ids.clear()  # automation is back
        not_yet = events.deliver_due(now=retry_at - timedelta(seconds=1))
        swept = events.deliver_due(now=retry_at)
    finally:
        events.unsubscribe(events.LEAD_CREATED, automation)
        events.unsubscribe(events.LEAD_CREATED, audit)

    assert automation.batches == [[first.pk, second.pk, third.pk]]
    assert set(Lead.objects.values_list("last_name", flat=True)) == {""}  # the failed batch's writes were rolled back
    assert [e.payload["lead_id"] for e in automation.calls] == [first.pk, second.pk, third.pk, second.pk]
    assert [e.payload["lead_id"] for e in audit.calls] == [first.pk, second.pk, third.pk]  # once each, never again
    assert (not_yet, swept) == ("0 due event(s): 0 now delivered, 0 still pending", "1 due event(s): 1 now delivered, 0 still pending")
    assert set(EventDelivery.objects.exclude(event=second_event).values_list("status", "attempts")) == {("delivered", 1)}
    assert sorted(EventDelivery.objects.filter(event=second_event).values_list("subscriber", "status", "attempts")) == [
        ("tests.test_event_drain.automation", "delivered", 2), ("tests.test_events_outbox.audit_trail", "delivered", 1)]


def test_a_drain_that_runs_out_of_time_hands_the_rest_to_a_new_drain(acme, queued, settings, django_capture_on_commit_callbacks):
    settings.EVENT_DRAIN_BATCH, settings.EVENT_DRAIN_SECONDS = 2, 0  # one batch per drain
    automation = batch_subscriber("automation")
    subscribe_with_batch(events.LEAD_CREATED, automation)
    try:
        leads = write_leads(acme, 5, django_capture_on_commit_callbacks)
        ran = run_queued_tasks()
    finally:
        events.unsubscribe(events.LEAD_CREATED, automation)

    assert ran == [DRAIN] * 3
    assert automation.batches == [[leads[0].pk, leads[1].pk], [leads[2].pk, leads[3].pk], [leads[4].pk]]


def test_without_a_shared_cache_every_write_queues_a_drain_and_the_later_ones_find_nothing_left(
        acme, queued, settings, django_capture_on_commit_callbacks):
    settings.CACHE_IS_SHARED = False  # the embedded default: web and qcluster would not see one flag
    automation = subscriber("automation")
    with subscribed(events.LEAD_CREATED, automation):
        write_leads(acme, 3, django_capture_on_commit_callbacks)
        ran = run_queued_tasks()

    assert ran == [DRAIN] * 3
    assert len(automation.calls) == 3
    assert set(EventDelivery.objects.values_list("attempts", flat=True)) == {1}


def test_a_subscriber_that_swallows_a_database_error_is_failed_and_retried_not_counted_as_delivered(
        acme, queued, django_capture_on_commit_callbacks):
    def careless(event):
        Lead.objects.create(account=acme, first_name="Written", phone="+5491100000001")
        try:
            Lead.objects.create(account=acme, first_name="Twice", phone="+5491100000001")
        except IntegrityError:
            pass  # the error is caught, but the transaction it happened in can only roll back
    careless.__qualname__ = "careless"
    with subscribed(events.LEAD_CREATED, careless):
        write_leads(acme, 1, django_capture_on_commit_callbacks)
        run_queued_tasks()

    assert list(EventDelivery.objects.values_list("status", "attempts")) == [("failed", 1)]
    assert "database error" in EventDelivery.objects.get().last_error
    assert not Lead.objects.filter(first_name="Written").exists()  # its writes were undone, and it will run again
    assert OutboxEvent.objects.get().delivered_at is None


def test_a_burst_of_new_leads_plans_one_welcome_each_through_automations_batch_form(
        acme, globex, acme_whatsapp, queued, django_capture_on_commit_callbacks):
    planning.subscribe_all()  # automation's own subscribers (this module sets the apps' aside)
    make_rule(acme, acme_whatsapp, name="Welcome", delays=(0, 24 * 60))
    leads = write_leads(acme, 4, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        services.create_lead(globex, first_name="Mallory's lead", phone="+5491100000000")  # no rule in globex

    with django_capture_on_commit_callbacks() as after_the_drain:
        ran = run_queued_tasks()

    assert ran == [DRAIN]
    assert [callback.__name__ for callback in after_the_drain] == ["queue_send_pass"]  # the welcomes are due now
    planned = list(MessageSend.objects.order_by("lead_id", "step__order").values_list("lead_id", "step__order"))
    assert planned == [(lead.pk, order) for lead in leads for order in (1, 2)]
    assert set(MessageSend.objects.values_list("account_id", flat=True)) == {acme.pk}
    assert not OutboxEvent.objects.filter(delivered_at__isnull=True).exists()


def test_two_status_changes_of_one_lead_in_one_batch_enter_a_rule_without_reentry_once(
        acme, acme_whatsapp, queued, django_capture_on_commit_callbacks):
    planning.subscribe_all()
    make_rule(acme, acme_whatsapp, trigger="lead_status_changed", name="Status follow-up")
    with django_capture_on_commit_callbacks(execute=True):
        lead = services.create_lead(acme, first_name="Ana", phone="+5491155550001")
    for status in ("contacted", "qualified"):
        with django_capture_on_commit_callbacks(execute=True):
            services.update_lead(Lead.objects.get(pk=lead.pk), status=status)

    run_queued_tasks()

    assert MessageSend.objects.filter(lead=lead).count() == 1  # as if the events were planned one after the other
    assert MessageSend.objects.get().trigger_key == f"event:{OutboxEvent.objects.filter(name='lead_status_changed').order_by('pk').first().pk}"


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="row locks: SQLite has one writer at a time")
@pytest.mark.django_db(transaction=True)
def test_the_sweep_arriving_while_a_drain_delivers_an_event_does_not_run_the_subscriber_again(acme, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)  # the drain publish queues is not run: the threads below play it
    started, release = threading.Event(), threading.Event()

    def slow(event):
        slow.calls.append(event.id)
        started.set()
        release.wait(10)
    slow.calls = []
    slow.__qualname__ = "slow_subscriber"
    lead = Lead.objects.create(account=acme, first_name="Ana")
    event = events.publish(events.LEAD_CREATED, account_id=acme.pk, lead_id=lead.pk)

    def in_thread(work, out):
        try:
            out.append(work())
        finally:
            connections.close_all()

    drained, swept = [], []
    with subscribed(events.LEAD_CREATED, slow):
        drain = threading.Thread(target=in_thread, args=(lambda: event_drain.deliver_batch(10), drained))
        drain.start()
        assert started.wait(10)
        sweep = threading.Thread(target=in_thread, args=(lambda: events.deliver_event(event.id, now=timezone.now()), swept))
        sweep.start()
        sweep.join(0.5)  # it waits on the drain's delivery row
        release.set()
        drain.join(10)
        sweep.join(10)

    assert slow.calls == [event.id]
    assert drained == [(1, 0)]
    assert swept == [f"event {event.id}: already delivered"] or swept == [f"event {event.id} (lead_created): 1 skipped"]
    assert list(EventDelivery.objects.values_list("status", "attempts")) == [("delivered", 1)]
