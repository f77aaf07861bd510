"""Delivering new domain events in batches: the drain task that ``events.publish`` queues.

A drain takes the events no delivery has touched yet, up to EVENT_DRAIN_BATCH at a time, and delivers each
batch in one transaction: it locks the events (SKIP LOCKED: a concurrent drain takes others), writes a
running ``EventDelivery`` per (event, subscriber) under its own claim token, runs each subscriber on its
events (its batch form, ``events.subscribe(many=)``, in one call; else one event at a time) and marks the
deliveries and events delivered, with one statement each. So a burst of writes costs a few statements per
batch instead of ten per event and subscriber.

What it shares with the one-event path (``events.deliver_event``, the sweep's): the delivery rows. The
unique (event, subscriber) row is written by whichever path comes first; the drain runs a subscriber only
on the rows its token wrote, so a subscriber never runs twice for an event. A subscriber that raises is
rolled back alone (a savepoint), its batch form falls back to one event at a time, and a failing event's
delivery is left failed with a retry time for the sweep. If the drain dies, its transaction rolls back
and the events are as new: the next drain or the sweep takes them.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from crm_marketing import events
from crm_marketing.event_models import EventDelivery, OutboxEvent
from crm_marketing.queueing import clear_flag, gather

log = logging.getLogger(__name__)
Status = EventDelivery.Status


def drain() -> str:
    """Deliver every new event, a batch at a time, until none is left or EVENT_DRAIN_SECONDS have passed
    (then a new drain is queued to go on, so other tasks get a worker too)."""
    gather(settings.EVENT_DRAIN_GATHER_SECONDS)
    clear_flag(events.DRAIN_QUEUED)  # first: an event committed from now on queues a new drain or is found below
    deadline, size = time.monotonic() + settings.EVENT_DRAIN_SECONDS, settings.EVENT_DRAIN_BATCH
    delivered = failed = 0
    while True:
        taken, failures = deliver_batch(size)
        delivered, failed = delivered + taken - failures, failed + failures
        if taken < size:  # none left: what came after the flag was cleared queued its own drain
            break
        if time.monotonic() > deadline:
            events.request_drain()
            break
    return f"drained {delivered + failed} domain event(s): {delivered} delivered, {failed} with a failed subscriber"


def deliver_batch(size: int) -> tuple[int, int]:
    """Deliver up to ``size`` new events in one transaction; returns (events taken, events with a failed subscriber)."""
    with transaction.atomic():
        untouched = ~Exists(EventDelivery.objects.filter(event=OuterRef("pk")))
        records = list(OutboxEvent.objects.select_for_update(skip_locked=True)
                       .filter(untouched, delivered_at__isnull=True).order_by("pk")[:size])
        if not records:
            return 0, 0
        now = timezone.now()
        token = uuid.uuid4().hex
        handlers = {record.name: events.subscribers_of(record.name) for record in records}
        EventDelivery.objects.bulk_create(
            [EventDelivery(event=record, subscriber=key, status=Status.RUNNING, claim_token=token, claimed_at=now, attempts=1)
             for record in records for key in handlers[record.name]], ignore_conflicts=True)
        mine = set(EventDelivery.objects.filter(event__in=records, claim_token=token).values_list("event_id", "subscriber"))
        failures = _run_subscribers(records, handlers, mine)
        for (event_id, key), error in failures.items():
            EventDelivery.objects.filter(event_id=event_id, subscriber=key, claim_token=token).update(
                status=Status.FAILED, last_error=error[:2000], next_attempt_at=now + events.backoff(1))
        EventDelivery.objects.filter(event__in=records, claim_token=token, status=Status.RUNNING).update(
            status=Status.DELIVERED, delivered_at=timezone.now(), claim_token="")
        _settle(records, handlers, mine, failures, now)
    return len(records), len({event_id for event_id, _ in failures})


def _run_subscribers(records: list[OutboxEvent], handlers: dict[str, dict[str, events.Handler]],
                     mine: set[tuple[int, str]]) -> dict[tuple[int, str], str]:
    """Run each subscriber on the events whose delivery this drain holds; returns the failures' errors."""
    todo: dict[tuple[str, str], list[OutboxEvent]] = defaultdict(list)
    for record in records:
        for key in handlers[record.name]:
            if (record.pk, key) in mine:
                todo[(record.name, key)].append(record)
    failures: dict[tuple[int, str], str] = {}
    for (name, key), subscribed in todo.items():
        domain_events = [events.DomainEvent(r.name, r.account_id, dict(r.payload), r.pk) for r in subscribed]
        many = events.batch_form(name, key)
        if many is not None:
            try:
                _in_savepoint(many, domain_events)
                continue
            except Exception:  # noqa: BLE001 - rolled back; one at a time below finds the event that fails
                log.exception("batch form of %s failed on %s event(s); delivering them one by one", key, len(domain_events))
        for event in domain_events:
            try:
                _in_savepoint(handlers[name][key], event)
            except Exception as exc:  # noqa: BLE001 - one broken subscriber must not stop the others; retried alone
                log.exception("event subscriber %s failed on %s #%s (attempt 1)", key, event.name, event.id)
                failures[(event.id, key)] = f"{type(exc).__name__}: {exc}"
    return failures


def _in_savepoint(handler, argument) -> None:
    """Run the handler in a savepoint. A handler that caught a database error without a savepoint of its own
    leaves this one marked for rollback: its writes are undone on exit without an exception, so that is
    raised here instead, and the delivery counts as failed (retried), not as delivered."""
    with transaction.atomic():
        handler(argument)
        if transaction.get_connection().needs_rollback:
            raise RuntimeError("the subscriber caught a database error; its writes were rolled back")


def _settle(records: list[OutboxEvent], handlers: dict[str, dict[str, events.Handler]], mine: set[tuple[int, str]],
            failures: dict[tuple[int, str], str], now: datetime) -> None:
    """Events whose every subscriber this drain delivered are delivered; the others (a failure, or a delivery
    the one-event path holds) are settled as that path does."""
    done, open_ = [], []
    for record in records:
        keys = handlers[record.name]
        if all((record.pk, key) in mine and (record.pk, key) not in failures for key in keys):
            done.append(record.pk)
        else:
            open_.append(record)
    if done:
        OutboxEvent.objects.filter(pk__in=done).update(delivered_at=timezone.now(), next_attempt_at=None)
    for record in open_:
        events.settle(record, handlers[record.name], now)
