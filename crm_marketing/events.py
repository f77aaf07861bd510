"""Domain events, durable: the core publishes, apps subscribe from their AppConfig.ready().

The core never imports an app. ``publish`` writes an ``OutboxEvent`` row in the writer's
transaction (a rolled-back change publishes nothing); a django-q2 drain queued once it commits
delivers it with the other new events in batches (crm_marketing.event_drain), and a scheduled sweep
(``deliver_due``) delivers what no drain did (the process died after the commit, the broker was
down) and retries failed deliveries with backoff, one event at a time.

Delivery is per (event, subscriber): each subscriber's ``EventDelivery`` row is claimed with one
conditional update, the handler runs in a transaction with the row's ``delivered`` mark, and a
raising handler is retried alone later. A handler that returned normally never runs again for that
event; one whose worker died mid-run runs again after ``CLAIM_LEASE``, so handlers must be
idempotent (key on ``event.id``).
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from crm_marketing.event_models import EventDelivery, OutboxEvent
from crm_marketing.queueing import enqueue_after_commit, queue_once

log = logging.getLogger(__name__)

LEAD_CREATED = "lead_created"
LEAD_STATUS_CHANGED = "lead_status_changed"
OPPORTUNITY_CREATED = "opportunity_created"
OPPORTUNITY_STAGE_CHANGED = "opportunity_stage_changed"
OPPORTUNITY_WON = "opportunity_won"
LEAD_REPLIED = "lead_replied"
# Rows were written in bulk (bulk_create, COPY: no model signals): apps re-derive what they keep
# from the account's CRM rows. Payload: none beyond account_id.
CRM_BULK_LOADED = "crm_bulk_loaded"

DELIVER_TASK = "crm_marketing.tasks.deliver_event"  # one event (queued before drains existed; still served)
DRAIN_TASK = "crm_marketing.tasks.drain_domain_events"
DRAIN_QUEUED = "crm_marketing:events:drain-queued"  # cache key: a drain is queued and has not started
DRAIN_QUEUED_SECONDS = 30
SWEEP_GRACE = timedelta(minutes=1)  # the on-commit task's head start before the sweep takes an event
CLAIM_LEASE = timedelta(minutes=5)  # a running delivery older than this was abandoned by a killed worker
MAX_ATTEMPTS = 10
MAX_BACKOFF = timedelta(hours=6)


@dataclass(frozen=True)
class DomainEvent:
    name: str
    account_id: int
    payload: dict[str, Any] = field(default_factory=dict)
    id: int | None = None  # the outbox row's id: subscribers key idempotency on it


Handler = Callable[[DomainEvent], None]
BatchHandler = Callable[[list[DomainEvent]], None]
_subscribers: dict[str, dict[str, Handler]] = {}
_batch_forms: dict[tuple[str, str], BatchHandler] = {}  # by (event name, subscriber id): ``subscribe(many=)``


class _ClaimLost(Exception):
    """Our lease ran out and another worker took the delivery: its run counts, ours is rolled back."""


def subscriber_id(handler: Handler) -> str:
    """The stable name a delivery row records: the same across processes and restarts."""
    qualname = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{getattr(handler, '__module__', None)}.{qualname}"


def subscribe(name: str, handler: Handler, *, many: BatchHandler | None = None) -> None:
    """Deliver ``name`` events to ``handler``; subscribing the same handler twice is a no-op.

    ``many``: the handler's batch form, which a drain (crm_marketing.event_drain) calls with a batch of
    events instead of calling ``handler`` once per event. Its effect must equal ``handler`` on each event
    in turn; if it raises, its writes are rolled back and the drain calls ``handler`` one event at a time."""
    handlers = _subscribers.setdefault(name, {})
    key = subscriber_id(handler)
    if key in handlers and handlers[key] != handler:
        raise ValueError(f"another handler of {name!r} is already subscribed as {key!r}: give it another name")
    handlers[key] = handler
    if many is not None:
        _batch_forms[(name, key)] = many
    else:
        _batch_forms.pop((name, key), None)


def batch_form(name: str, key: str) -> BatchHandler | None:
    return _batch_forms.get((name, key))


def unsubscribe(name: str, handler: Handler) -> None:
    handlers = _subscribers.get(name, {})
    key = subscriber_id(handler)
    if handlers.get(key) == handler:
        del handlers[key]
        _batch_forms.pop((name, key), None)


def subscribers_of(name: str) -> dict[str, Handler]:
    return dict(_subscribers.get(name, {}))


# -- publishing -------------------------------------------------------------------------------------------
def publish(name: str, *, account_id: int, **payload: Any) -> DomainEvent:
    """Write the event in the caller's transaction; queue its delivery once that commits.

    Call it inside the writer's ``transaction.atomic()`` (or in autocommit right after the write)."""
    return publish_many(name, account_id=account_id, payloads=[payload])[0]


def publish_many(name: str, *, account_id: int, payloads: list[dict[str, Any]]) -> list[DomainEvent]:
    """``publish`` for several events of one kind and account: one insert, one drain queued."""
    now = timezone.now()
    records = OutboxEvent.objects.bulk_create([
        OutboxEvent(name=name, account_id=account_id, payload=payload, created_at=now, next_attempt_at=now + SWEEP_GRACE)
        for payload in payloads])
    if not records:
        return []
    # A broker outage must not undo or fail the write: the sweep delivers the events instead.
    if settings.CACHE_IS_SHARED:  # one drain queued for a burst of writes (crm_marketing.event_drain)
        transaction.on_commit(request_drain, robust=True)
    else:  # every process has its own flag: a drain per write (with the ORM broker, in the writer's transaction)
        enqueue_after_commit(DRAIN_TASK, task_name=f"domain-event-{records[0].pk}", save=False)
    return [DomainEvent(name, account_id, record.payload, record.pk) for record in records]


def request_drain() -> None:
    queue_once(DRAIN_QUEUED, DRAIN_TASK, flag_seconds=DRAIN_QUEUED_SECONDS)


# -- delivering -------------------------------------------------------------------------------------------
def deliver_event(event_id: int, *, now: datetime | None = None) -> str:
    """Run every subscriber of the event that has not got it yet; returns a short summary."""
    record = OutboxEvent.objects.filter(pk=event_id).first()
    if record is None:
        return f"event {event_id}: gone"
    if record.delivered_at is not None:
        return f"event {event_id}: already delivered"
    now = now or timezone.now()
    handlers = subscribers_of(record.name)
    if handlers:  # the subscribers known now, also ones registered after the event was published
        EventDelivery.objects.bulk_create([EventDelivery(event=record, subscriber=key) for key in handlers], ignore_conflicts=True)
    tally: dict[str, int] = {}
    for key, handler in handlers.items():
        outcome = _deliver_one(record, key, handler, now)
        tally[outcome] = tally.get(outcome, 0) + 1
    settle(record, handlers, now)
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(tally.items())) or "no subscribers"
    return f"event {event_id} ({record.name}): {summary}"


def _claim(record: OutboxEvent, key: str, now: datetime) -> tuple[str, int] | None:
    """Take the delivery for this worker (one conditional update); None when it is not claimable."""
    claimable = (Q(status=EventDelivery.Status.PENDING)
                 | Q(status=EventDelivery.Status.FAILED, next_attempt_at__lte=now)
                 | Q(status=EventDelivery.Status.RUNNING, claimed_at__lte=now - CLAIM_LEASE, attempts__lt=MAX_ATTEMPTS))
    token = uuid.uuid4().hex
    taken = EventDelivery.objects.filter(claimable, event=record, subscriber=key).update(
        status=EventDelivery.Status.RUNNING, claim_token=token, claimed_at=timezone.now(), attempts=F("attempts") + 1)
    if not taken:
        return None
    attempts = EventDelivery.objects.filter(event=record, subscriber=key).values_list("attempts", flat=True).get()
    return token, attempts


def _deliver_one(record: OutboxEvent, key: str, handler: Handler, now: datetime) -> str:
    claim = _claim(record, key, now)
    if claim is None:
        return "skipped"  # delivered, running elsewhere, not due, or given up
    token, attempts = claim
    mine = EventDelivery.objects.filter(event=record, subscriber=key, claim_token=token, status=EventDelivery.Status.RUNNING)
    event = DomainEvent(record.name, record.account_id, dict(record.payload), record.pk)
    try:
        with transaction.atomic():  # the handler's writes and its delivered mark commit together
            handler(event)
            if not mine.update(status=EventDelivery.Status.DELIVERED, delivered_at=timezone.now(), last_error="", next_attempt_at=None):
                raise _ClaimLost
    except _ClaimLost:
        log.warning("delivery of event %s to %s was taken over by another worker", record.pk, key)
        return "taken over"
    except Exception as exc:  # one broken subscriber must not stop the others; it is retried alone
        log.exception("event subscriber %s failed on %s #%s (attempt %s)", key, record.name, record.pk, attempts)
        retry_at = timezone.now() + backoff(attempts) if attempts < MAX_ATTEMPTS else None
        mine.update(status=EventDelivery.Status.FAILED, last_error=f"{type(exc).__name__}: {exc}"[:2000], next_attempt_at=retry_at)
        return "failed"
    return "delivered"


def backoff(attempts: int) -> timedelta:
    return min(timedelta(minutes=2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def settle(record: OutboxEvent, handlers: dict[str, Handler], now: datetime) -> None:
    """Mark the event delivered when every known subscriber has it, else say when to look again."""
    waiting: list[datetime | None] = []
    for status, retry_at, claimed_at, attempts in EventDelivery.objects.filter(event=record, subscriber__in=list(handlers)).exclude(
            status=EventDelivery.Status.DELIVERED).values_list("status", "next_attempt_at", "claimed_at", "attempts"):
        if status == EventDelivery.Status.RUNNING:  # a handler that killed its worker every time is given up too
            lease_ends = (claimed_at or now) + CLAIM_LEASE
            waiting.append(None if attempts >= MAX_ATTEMPTS and lease_ends <= now else lease_ends)
        elif status == EventDelivery.Status.FAILED:
            waiting.append(retry_at)  # None: every retry used up, left for a person to look at
        else:
            waiting.append(now + SWEEP_GRACE)
    pending = OutboxEvent.objects.filter(pk=record.pk, delivered_at__isnull=True)
    if not waiting:
        pending.update(delivered_at=timezone.now(), next_attempt_at=None)
    else:
        due = [moment for moment in waiting if moment is not None]
        pending.update(next_attempt_at=min(due) if due else None)


def deliver_due(limit: int = 200, *, now: datetime | None = None) -> str:
    """The sweep: deliver events no task delivered and retry failed deliveries whose time has come."""
    now = now or timezone.now()
    due = list(OutboxEvent.objects.filter(delivered_at__isnull=True, next_attempt_at__lte=now)
               .order_by("next_attempt_at", "id").values_list("pk", flat=True)[:limit])
    outcomes = [deliver_event(event_id, now=now) for event_id in due]
    delivered = OutboxEvent.objects.filter(pk__in=due, delivered_at__isnull=False).count()
    return f"{len(outcomes)} due event(s): {delivered} now delivered, {len(outcomes) - delivered} still pending"
