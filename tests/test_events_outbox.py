"""Domain events are durable: written in the writer's transaction, delivered once per subscriber by
the on-commit task or the sweep, a failing subscriber retried alone."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

import pytest
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ

from crm_marketing import events, services, tasks
from crm_marketing.demo import staff_group
from crm_marketing.errors import Conflict
from crm_marketing.models import EventDelivery, Lead, OutboxEvent, SystemEvent
from tests.conftest import make_lead, make_opportunity

pytestmark = pytest.mark.django_db


def subscriber(name: str, *, fail_times: int = 0):
    """A handler named ``name`` (its identity in the delivery table) that keeps what it got in
    ``.calls`` and raises on its first ``fail_times`` calls."""
    def handler(event: events.DomainEvent) -> None:
        handler.calls.append(event)
        if len(handler.calls) <= fail_times:
            raise RuntimeError(f"{name} is down")
    handler.__qualname__ = name
    handler.calls = []
    return handler


@contextmanager
def subscribed(event_name: str, *handlers) -> Iterator[None]:
    for handler in handlers:
        events.subscribe(event_name, handler)
    try:
        yield
    finally:
        for handler in handlers:
            events.unsubscribe(event_name, handler)


def deliveries(event: OutboxEvent) -> list[tuple]:
    return list(event.deliveries.order_by("subscriber").values_list("subscriber", "status", "attempts", "last_error"))


@pytest.fixture(autouse=True)
def only_this_modules_subscribers():
    """These tests watch the outbox with their own subscribers: the installed apps' subscribers (e.g.
    automation's planner) are set aside meanwhile and put back after."""
    names = [value for key, value in vars(events).items() if key.isupper() and isinstance(value, str)]
    set_aside = [(name, handler, events.batch_form(name, key)) for name in names for key, handler in events.subscribers_of(name).items()
                 if not getattr(handler, "__module__", "").startswith("tests.")]
    for name, handler, _ in set_aside:
        events.unsubscribe(name, handler)
    yield
    for name, handler, many in set_aside:
        events.subscribe(name, handler, many=many)


def after_the_grace() -> timezone.datetime:
    return timezone.now() + events.SWEEP_GRACE


# -- nothing lost ----------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_lead_committed_by_a_process_that_died_before_delivering_reaches_the_subscriber_once_through_the_sweep(
        alice_api, acme, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)  # the on-commit task lands in the ORM queue, as in production
    automation = subscriber("automation_on_lead_created")
    with subscribed(events.LEAD_CREATED, automation):
        response = alice_api.post("/crm/leads", {"first_name": "María", "phone": "+5491155550001"}, format="json")
        assert response.status_code == 201
        assert OrmQ.objects.count() == 1
        OrmQ.objects.all().delete()  # the broker lost it (or the process died before queueing)

        sweeps = [tasks.deliver_due_events(), events.deliver_due(now=after_the_grace()), events.deliver_due(now=after_the_grace())]

    lead, event = Lead.objects.get(), OutboxEvent.objects.get()
    assert sweeps == ["0 due event(s): 0 now delivered, 0 still pending",  # the queued task gets its head start
                      "1 due event(s): 1 now delivered, 0 still pending",
                      "0 due event(s): 0 now delivered, 0 still pending"]
    assert automation.calls == [events.DomainEvent(events.LEAD_CREATED, acme.pk, {"lead_id": lead.pk}, event.pk)]
    assert deliveries(event) == [("tests.test_events_outbox.automation_on_lead_created", "delivered", 1, "")]
    assert event.delivered_at is not None and event.next_attempt_at is None


def test_a_subscriber_registered_after_the_event_was_published_gets_it_from_the_sweep(acme):
    lead = services.create_lead(acme, first_name="Ana")  # its on-commit task never runs here
    late = subscriber("late_app")

    with subscribed(events.LEAD_CREATED, late):
        events.deliver_due(now=after_the_grace())

    assert [e.payload for e in late.calls] == [{"lead_id": lead.pk}]


def test_a_rolled_back_write_publishes_nothing(acme, django_capture_on_commit_callbacks):
    automation = subscriber("automation")
    with subscribed(events.LEAD_CREATED, automation), django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            services.create_lead(acme, first_name="Ana")
            raise RuntimeError("the request failed after the lead was written")
        events.deliver_due(now=after_the_grace())

    assert (Lead.objects.count(), OutboxEvent.objects.count(), callbacks, automation.calls) == (0, 0, [], [])


def test_a_duplicate_lead_refused_by_the_database_publishes_nothing(acme, django_capture_on_commit_callbacks):
    make_lead(acme, phone="+5491155550001")
    automation = subscriber("automation")
    with subscribed(events.LEAD_CREATED, automation), django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(Conflict):
            services.create_lead(acme, first_name="Otra", phone="+5491155550001")

    assert (OutboxEvent.objects.count(), automation.calls) == (0, [])


# -- once per subscriber --------------------------------------------------------------------------------------------
def test_a_raising_subscriber_is_retried_alone_and_the_other_ran_once(acme, django_capture_on_commit_callbacks):
    marketing, automation = subscriber("marketing_on_lead"), subscriber("automation_on_lead", fail_times=1)
    with subscribed(events.LEAD_CREATED, marketing, automation):
        with django_capture_on_commit_callbacks(execute=True):
            lead = services.create_lead(acme, first_name="Ana")
        event = OutboxEvent.objects.get()
        after_first = deliveries(event)
        retry_at = EventDelivery.objects.get(subscriber__endswith="automation_on_lead").next_attempt_at
        not_yet = events.deliver_due(now=retry_at - timedelta(seconds=1))
        due = events.deliver_due(now=retry_at)

    assert after_first == [("tests.test_events_outbox.automation_on_lead", "failed", 1, "RuntimeError: automation_on_lead is down"),
                           ("tests.test_events_outbox.marketing_on_lead", "delivered", 1, "")]
    assert (not_yet, due) == ("0 due event(s): 0 now delivered, 0 still pending", "1 due event(s): 1 now delivered, 0 still pending")
    assert [e.payload for e in marketing.calls] == [{"lead_id": lead.pk}]
    assert [e.payload for e in automation.calls] == [{"lead_id": lead.pk}] * 2
    assert deliveries(event) == [("tests.test_events_outbox.automation_on_lead", "delivered", 2, ""),
                                 ("tests.test_events_outbox.marketing_on_lead", "delivered", 1, "")]


def test_a_subscriber_that_keeps_failing_is_given_up_after_the_last_attempt_and_stays_visible(acme):
    broken = subscriber("broken", fail_times=events.MAX_ATTEMPTS + 1)
    with subscribed(events.LEAD_CREATED, broken):
        services.create_lead(acme, first_name="Ana")
        moment = after_the_grace()
        for _ in range(events.MAX_ATTEMPTS + 2):
            events.deliver_due(now=moment)
            moment += events.MAX_BACKOFF

    event = OutboxEvent.objects.get()
    assert len(broken.calls) == events.MAX_ATTEMPTS
    assert deliveries(event) == [("tests.test_events_outbox.broken", "failed", events.MAX_ATTEMPTS, "RuntimeError: broken is down")]
    assert (event.delivered_at, event.next_attempt_at) == (None, None)


def test_the_same_event_delivered_again_by_the_task_and_the_sweep_runs_each_subscriber_once(acme, django_capture_on_commit_callbacks):
    rollups, automation = subscriber("rollups"), subscriber("automation")
    with subscribed(events.OPPORTUNITY_CREATED, rollups, automation):
        with django_capture_on_commit_callbacks(execute=True):
            services.create_opportunity(acme, lead=make_lead(acme), title="Plan Pro")
        event = OutboxEvent.objects.get()
        again = [tasks.deliver_event(event.pk), events.deliver_due(now=after_the_grace())]

    assert again == [f"event {event.pk}: already delivered", "0 due event(s): 0 now delivered, 0 still pending"]
    assert (len(rollups.calls), len(automation.calls)) == (1, 1)


def test_the_sweep_racing_a_worker_mid_handler_does_not_run_the_subscriber_again(acme):
    services.create_lead(acme, first_name="Ana")
    event_id = OutboxEvent.objects.get().pk
    racing: list[str] = []

    def slow_subscriber(event):
        slow_subscriber.calls.append(event.id)
        racing.append(events.deliver_due(now=after_the_grace() + events.SWEEP_GRACE))  # the sweep arrives now
    slow_subscriber.calls = []

    with subscribed(events.LEAD_CREATED, slow_subscriber):
        first = tasks.deliver_event(event_id)

    assert slow_subscriber.calls == [event_id]
    assert racing == ["1 due event(s): 0 now delivered, 1 still pending"]  # it found the claim and left it
    assert first == f"event {event_id} (lead_created): 1 delivered"
    assert OutboxEvent.objects.get().delivered_at is not None


@pytest.mark.django_db(transaction=True)
def test_two_workers_delivering_the_same_event_at_once_run_each_subscriber_once(acme):
    if connection.vendor == "sqlite":  # SQLITE_LOCKED there: no busy wait, so a worker's BEGIN fails at random
        pytest.skip("the in-memory (shared-cache) SQLite test database locks tables between threads; the race is PostgreSQL's")
    services.create_lead(acme, first_name="Ana")  # autocommit here: committed, its task ran inline
    event = OutboxEvent.objects.get()
    OutboxEvent.objects.filter(pk=event.pk).update(delivered_at=None)  # as if the task had not run
    rollups, automation = subscriber("rollups_racing"), subscriber("automation_racing")
    start, results = threading.Barrier(2), []

    def worker() -> None:
        try:
            start.wait()
            results.append(tasks.deliver_event(event.pk))
        finally:
            connection.close()

    with subscribed(events.LEAD_CREATED, rollups, automation):
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert (len(rollups.calls), len(automation.calls)) == (1, 1)
    assert sorted(EventDelivery.objects.values_list("status", "attempts")) == [("delivered", 1), ("delivered", 1)]
    assert len(results) == 2


def test_a_delivery_abandoned_by_a_killed_worker_is_run_again_after_the_lease(acme):
    services.create_lead(acme, first_name="Ana")
    event = OutboxEvent.objects.get()
    handler = subscriber("automation")
    killed_at = timezone.now()
    EventDelivery.objects.create(event=event, subscriber=events.subscriber_id(handler), status="running",
                                 attempts=1, claim_token="killed-worker", claimed_at=killed_at)

    with subscribed(events.LEAD_CREATED, handler):
        within_lease = events.deliver_due(now=killed_at + events.CLAIM_LEASE - timedelta(seconds=1))
        after_lease = events.deliver_due(now=killed_at + events.CLAIM_LEASE)

    assert within_lease == "1 due event(s): 0 now delivered, 1 still pending"
    assert after_lease == "1 due event(s): 1 now delivered, 0 still pending"
    assert len(handler.calls) == 1
    assert deliveries(event) == [("tests.test_events_outbox.automation", "delivered", 2, "")]


def test_a_handlers_writes_are_undone_when_it_raises_so_its_retry_starts_clean(acme, django_capture_on_commit_callbacks):
    def half_done(event):
        Lead.objects.filter(pk=event.payload["lead_id"]).update(first_name="Written by a handler that then failed")
        raise RuntimeError("boom")

    with subscribed(events.LEAD_CREATED, half_done), django_capture_on_commit_callbacks(execute=True):
        lead = services.create_lead(acme, first_name="Ana")

    lead.refresh_from_db()
    assert lead.first_name == "Ana"
    assert EventDelivery.objects.get().status == "failed"


def test_two_different_handlers_with_one_name_cannot_both_subscribe():
    first, second = subscriber("same_name"), subscriber("same_name")
    with subscribed(events.LEAD_CREATED, first):
        with pytest.raises(ValueError, match="already subscribed as 'tests.test_events_outbox.same_name'"):
            events.subscribe(events.LEAD_CREATED, second)


# -- the admin goes through the services ----------------------------------------------------------------------------
@pytest.fixture
def alice_admin(alice) -> Client:
    alice.groups.add(staff_group())
    client = Client()
    client.force_login(alice)
    return client


LEAD_FORM = {
    "first_name": "María", "last_name": "Pérez", "phone": "+5491155550001", "email": "", "status": "new",
    "lead_source": "manual", "meta_campaign_id": "", "meta_adset_id": "", "meta_ad_id": "", "meta_form_id": "",
    "meta_ad_headline": "", "meta_ad_body": "", "ctwa_clid": "", "external_ids": "{}", "seller": "",
    "created_at_0": "2026-11-01", "created_at_1": "10:00:00",
    "opportunities-TOTAL_FORMS": "0", "opportunities-INITIAL_FORMS": "0",
}


def test_alice_adds_a_lead_in_the_admin_and_lead_created_is_published_once_by_the_service(
        alice_admin, alice, acme, django_capture_on_commit_callbacks):
    automation = subscriber("automation")
    with subscribed(events.LEAD_CREATED, automation), django_capture_on_commit_callbacks(execute=True):
        response = alice_admin.post("/admin/crm_marketing/lead/add/", {**LEAD_FORM, "account": acme.pk})

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    lead = Lead.objects.get()
    assert (lead.account, lead.name, lead.phone) == (acme, "María Pérez", "+5491155550001")
    assert response["Location"] == "/admin/crm_marketing/lead/"
    assert automation.calls == [events.DomainEvent(events.LEAD_CREATED, acme.pk, {"lead_id": lead.pk}, OutboxEvent.objects.get().pk)]
    assert SystemEvent.objects.filter(action="lead.create", actor=alice, target_id=str(lead.pk)).count() == 1


def test_a_stage_change_in_the_admin_publishes_stage_changed_once(alice_admin, alice, acme, django_capture_on_commit_callbacks):
    opportunity = make_opportunity(make_lead(acme), title="Plan Pro", stage="new")
    form = {"account": acme.pk, "lead": opportunity.lead_id, "title": "Plan Pro", "stage": "proposal", "amount": "0.00",
            "currency": "USD", "seller": "", "created_at_0": "2026-11-01", "created_at_1": "10:00:00"}
    stage_changed, created = subscriber("on_stage_changed"), subscriber("on_created")
    with subscribed(events.OPPORTUNITY_STAGE_CHANGED, stage_changed), subscribed(events.OPPORTUNITY_CREATED, created):
        with django_capture_on_commit_callbacks(execute=True):
            response = alice_admin.post(f"/admin/crm_marketing/opportunity/{opportunity.pk}/change/", form)

    assert response.status_code == 302
    assert [e.payload for e in stage_changed.calls] == [{"opportunity_id": opportunity.pk, "old": "new", "new": "proposal"}]
    assert created.calls == []
    assert list(OutboxEvent.objects.values_list("name", flat=True)) == [events.OPPORTUNITY_STAGE_CHANGED]


def test_alice_adds_an_opportunity_in_the_admin_and_opportunity_created_is_published_once(
        alice_admin, alice, acme, django_capture_on_commit_callbacks):
    lead = make_lead(acme)
    form = {"account": acme.pk, "lead": lead.pk, "title": "Plan Pro", "stage": "new", "amount": "100.00",
            "currency": "USD", "seller": "", "created_at_0": "2026-11-01", "created_at_1": "10:00:00"}
    created = subscriber("on_created")
    with subscribed(events.OPPORTUNITY_CREATED, created), django_capture_on_commit_callbacks(execute=True):
        response = alice_admin.post("/admin/crm_marketing/opportunity/add/", form)

    assert response.status_code == 302
    opportunity = lead.opportunities.get()
    assert [e.payload for e in created.calls] == [{"opportunity_id": opportunity.pk, "lead_id": lead.pk}]
    assert SystemEvent.objects.filter(action="opportunity.create", actor=alice, target_id=str(opportunity.pk)).count() == 1


def test_a_superuser_sees_each_subscribers_delivery_in_the_admin_and_staff_do_not(alice_admin, acme):
    from django.contrib.auth import get_user_model

    broken = subscriber("broken_subscriber", fail_times=1)
    with subscribed(events.LEAD_CREATED, broken):
        services.create_lead(acme, first_name="Ana")
        events.deliver_due(now=after_the_grace())
    event = OutboxEvent.objects.get()
    root = Client()
    root.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))

    page = root.get(f"/admin/crm_marketing/outboxevent/{event.pk}/change/")

    assert page.status_code == 200
    assert "tests.test_events_outbox.broken_subscriber" in page.content.decode()
    assert "RuntimeError: broken_subscriber is down" in page.content.decode()
    assert root.get("/admin/crm_marketing/outboxevent/?delivered_at__isempty=1").status_code == 200
    assert alice_admin.get(f"/admin/crm_marketing/outboxevent/{event.pk}/change/").status_code in (302, 403)
