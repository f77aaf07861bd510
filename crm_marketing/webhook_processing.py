"""Processing stored webhook events: drain tasks take received events in batches; the retry sweep re-runs
failed and abandoned ones (the handlers' contract is in crm_marketing.webhooks).

A batch runs handler by handler (a handler's batch form takes all its events at once) and its outcomes
and events are written with one statement each. The outcome of each (event, handler) is kept, so a
retry runs only the handlers that have not done their part.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.db.models import F, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.utils import timezone

from crm_marketing.events import subscriber_id as handler_id
from crm_marketing.queueing import gather
from crm_marketing.webhook_models import WebhookEvent, WebhookHandlerOutcome
from crm_marketing.webhooks import (
    BatchHandler, EventFailed, HandlerResult, IgnoreEvent, RetryLater, WebhookHandler, batch_form, clear_drain_flag,
    handlers_for, request_drain,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
MAX_BACKOFF = timedelta(hours=6)
STUCK_MARGIN = timedelta(minutes=1)  # clock skew between the host that claimed and the one that sweeps


def stuck_after() -> timedelta:
    """A ``processing`` event older than this was abandoned: a qcluster ends a task after its timeout, so no drain
    still runs on it (30 minutes before: with 200-event batches, a killed drain's leads waited that long)."""
    return timedelta(seconds=settings.Q_CLUSTER["timeout"]) + STUCK_MARGIN


def claim_event(event_id: int) -> WebhookEvent | None:
    """Take the event for this worker with one conditional update; None when another has it or it is done."""
    now = timezone.now()
    claimable = [WebhookEvent.Status.RECEIVED, WebhookEvent.Status.FAILED]
    taken = WebhookEvent.objects.filter(pk=event_id, status__in=claimable).update(
        status=WebhookEvent.Status.PROCESSING, claimed_at=now, attempts=F("attempts") + 1)
    return WebhookEvent.objects.filter(pk=event_id).first() if taken else None


def process_event(event_id: int) -> str:
    """Run the handlers of the event's field that have no final outcome yet; record each outcome
    and the event's overall status (processed / ignored / failed)."""
    event = claim_event(event_id)
    if event is None:
        return f"event {event_id}: not claimable (already taken or finished)"
    return _process_claimed(event, list(WebhookHandlerOutcome.objects.filter(event=event)))


def claim_received(limit: int) -> list[WebhookEvent]:
    """Take up to ``limit`` received events, oldest first, for this worker with one UPDATE. A concurrent drain
    skips the rows this one is taking (SKIP LOCKED on PostgreSQL; SQLite has one writer at a time)."""
    with transaction.atomic():
        ids = list(WebhookEvent.objects.select_for_update(skip_locked=True).filter(status=WebhookEvent.Status.RECEIVED)
                   .order_by("pk").values_list("pk", flat=True)[:limit])
        if ids:
            WebhookEvent.objects.filter(pk__in=ids).update(
                status=WebhookEvent.Status.PROCESSING, claimed_at=timezone.now(), attempts=F("attempts") + 1)
    return list(WebhookEvent.objects.filter(pk__in=ids).order_by("pk")) if ids else []


def drain_events() -> str:
    """Process every received event, WEBHOOK_DRAIN_BATCH at a time, until none is left; after
    WEBHOOK_DRAIN_SECONDS a new drain is requested to go on (other tasks get a worker too). Failed events
    wait for their retry time (the sweep), they are not drained."""
    gather(settings.WEBHOOK_DRAIN_GATHER_SECONDS)  # at 65 statuses a second a drain then takes a batch, not 2 or 3
    clear_drain_flag()  # first: an event committed from now on queues a new drain or is found below
    deadline, batch = time.monotonic() + settings.WEBHOOK_DRAIN_SECONDS, settings.WEBHOOK_DRAIN_BATCH
    tally: dict[str, int] = defaultdict(int)
    while events := claim_received(batch):
        outcomes: dict[int, list[WebhookHandlerOutcome]] = defaultdict(list)
        for outcome in WebhookHandlerOutcome.objects.filter(event__in=[e.pk for e in events]):
            outcomes[outcome.event_id].append(outcome)  # left by an earlier run the admin put back to received
        _process_batch(events, outcomes)
        for event in events:
            tally[event.status] += 1
        if len(events) < batch:  # none was left: what came after the flag was cleared queued its own drain
            break
        if time.monotonic() > deadline:
            request_drain()
            break
    return f"drained {sum(tally.values())} webhook event(s): " + (", ".join(f"{n} {s}" for s, n in sorted(tally.items())) or "none")


def _release(events: list[WebhookEvent]) -> None:
    """Give claimed events a drain did not get to back to ``received`` (for the next drain), as if never claimed;
    the ones it was working on stay ``processing`` for the stuck sweep, as with one task per event."""
    if not events:
        return
    try:
        if not db_connection.in_atomic_block:
            db_connection.close_if_unusable_or_obsolete()
        WebhookEvent.objects.filter(pk__in=[e.pk for e in events], status=WebhookEvent.Status.PROCESSING).update(
            status=WebhookEvent.Status.RECEIVED, claimed_at=None, attempts=F("attempts") - 1)
    except Exception:  # noqa: BLE001 - the stuck sweep takes them after stuck_after(); the first error is the one to report
        log.exception("webhook events %s left processing after a drain failed", [e.pk for e in events])


EVENT_RESULT_FIELDS = ["account", "status", "result", "error", "processed_at", "next_attempt_at"]
OUTCOME_RESULT_FIELDS = ["status", "result", "error", "attempts", "updated_at"]


def _process_batch(events: list[WebhookEvent], earlier: dict[int, list[WebhookHandlerOutcome]]) -> None:
    """Run the handlers of claimed events handler by handler: each handler takes the events it has no final
    outcome for yet, all in one call of its batch form (``register_handler(many=)``) or one by one; then
    write every outcome with one statement and every event with another.

    If the drain dies meanwhile, the events all of whose handlers ran are saved, the ones a handler was
    running on stay ``processing`` (the stuck sweep's), and the rest go back to ``received`` for the next
    drain; a handler that ran on an event whose outcome was not saved runs again (handlers are idempotent)."""
    outcomes = {event.pk: {outcome.handler: outcome for outcome in earlier.get(event.pk, ())} for event in events}
    fresh: dict[int, dict[str, WebhookHandlerOutcome]] = {event.pk: {} for event in events}  # this run's, to write
    retry_afters: dict[int, list[float | None | bool]] = {event.pk: [] for event in events}
    by_field: dict[str, list[WebhookEvent]] = defaultdict(list)
    for event in events:
        by_field[event.field].append(event)
    working: list[WebhookEvent] = []
    try:
        for field, field_events in by_field.items():
            for handler in handlers_for(field):
                key = handler_id(handler)
                todo = [e for e in field_events if not _is_final(outcomes[e.pk].get(key))]
                if not todo:
                    continue
                many = batch_form(handler)
                working = todo
                results = _run_many(many, todo) if many is not None else None
                for n, event in enumerate(todo):
                    if results is None:
                        working = [event]
                    result = results[n] if results is not None else _run(handler, event)
                    earlier_outcome = outcomes[event.pk].get(key)
                    outcome = WebhookHandlerOutcome(event=event, handler=key,
                                                    attempts=earlier_outcome.attempts if earlier_outcome else 0)
                    retry_after = _record(outcome, event, result)
                    if outcome.status == WebhookHandlerOutcome.Status.FAILED:
                        retry_afters[event.pk].append(retry_after)
                    outcomes[event.pk][key] = fresh[event.pk][key] = outcome
                working = []
    except BaseException:  # the task dies here (the connection, a kill): no event of the batch is lost
        working_pks = {e.pk for e in working}
        done = [e for e in events if e.pk not in working_pks
                and all(handler_id(h) in fresh[e.pk] or _is_final(outcomes[e.pk].get(handler_id(h))) for h in handlers_for(e.field))]
        try:
            _write_batch(done, fresh, retry_afters, [outcomes[e.pk] for e in done])
        except Exception:  # noqa: BLE001 - they are released below; the first error is the one to report
            log.exception("webhook events %s not saved after a drain failed", [e.pk for e in done])
        _release([e for e in events if e.pk not in working_pks])  # those saved above are no longer processing
        raise
    try:
        _write_batch(events, fresh, retry_afters, [outcomes[e.pk] for e in events])
    except BaseException:
        _release(events)  # their handlers run again on the next drain
        raise


def _write_batch(events: list[WebhookEvent], fresh: dict[int, dict[str, WebhookHandlerOutcome]],
                 retry_afters: dict[int, list[float | None | bool]], outcomes: list[dict[str, WebhookHandlerOutcome]]) -> None:
    """Settle the events from their handlers' outcomes, then write this run's outcomes (new rows inserted, those
    of an earlier attempt updated) with one statement and the events with another."""
    if not events:
        return
    now = timezone.now()
    for event, by_handler in zip(events, outcomes):
        _settle_event(event, [by_handler[handler_id(h)] for h in handlers_for(event.field)],
                      retry_after=_retry_after(retry_afters[event.pk]), now=now)
    written = [outcome for event in events for outcome in fresh[event.pk].values()]
    with transaction.atomic():
        if written:
            WebhookHandlerOutcome.objects.bulk_create(written, update_conflicts=True, unique_fields=["event", "handler"],
                                                      update_fields=OUTCOME_RESULT_FIELDS)
        _update_events(events)


def _update_events(events: list[WebhookEvent]) -> None:
    """``bulk_update(events, EVENT_RESULT_FIELDS)`` in one statement, with a CASE over the events only for the
    fields whose values differ (typically ``result`` alone), written as SQL: Django's CASE of every field for
    every event cost 2 ms of CPU per event, and resolving a ``When`` per event was still a fifth of a 200-lead
    leadgen batch's CPU."""
    updates: dict[str, Any] = {}
    for name in EVENT_RESULT_FIELDS:
        field = WebhookEvent._meta.get_field(name)
        values = [getattr(event, field.attname) for event in events]
        if all(value == values[0] for value in values):
            updates[field.attname] = values[0]
            continue
        case = _case_by_pk(field, events, values)
        updates[field.attname] = Cast(case, output_field=field) if db_connection.features.requires_casted_case_in_updates else case
    WebhookEvent.objects.filter(pk__in=[event.pk for event in events]).update(**updates)


def _case_by_pk(field, events: list[WebhookEvent], values: list[Any]) -> RawSQL:
    """CASE "id" WHEN pk THEN value ... END for one column (the values as the field saves them)."""
    pk_column = db_connection.ops.quote_name(WebhookEvent._meta.pk.column)
    params: list[Any] = []
    for event, value in zip(events, values):
        params += [event.pk, field.get_db_prep_save(value, db_connection)]
    return RawSQL(f"CASE {pk_column}{' WHEN %s THEN %s' * len(events)} END", params, output_field=field)


def _is_final(outcome: WebhookHandlerOutcome | None) -> bool:
    """The handler already did its part: a retry of another handler must not run it again."""
    return outcome is not None and outcome.pk is not None and outcome.status in WebhookHandlerOutcome.FINAL


def _retry_after(failures: list[float | None | bool]) -> float | None:
    """When to retry an event from what its failed handlers said: None for a permanent failure among them
    (or none failed), else the longest retry_after (0 when a transient failure gave none)."""
    if not failures or any(value is False for value in failures):
        return None
    return max(value or 0 for value in failures)


def _process_claimed(event: WebhookEvent, earlier: list[WebhookHandlerOutcome]) -> str:
    handlers = handlers_for(event.field)
    outcomes = {outcome.handler: outcome for outcome in earlier}
    failures: list[float | None | bool] = []
    for handler in handlers:
        key = handler_id(handler)
        outcome = outcomes.get(key) or WebhookHandlerOutcome(event=event, handler=key)
        if _is_final(outcome):
            continue
        retry_after = _run_handler(handler, event, outcome)
        if outcome.status == WebhookHandlerOutcome.Status.FAILED:
            failures.append(retry_after)
        outcomes[key] = outcome
    _settle_event(event, [outcomes[handler_id(h)] for h in handlers], retry_after=_retry_after(failures))
    event.save(update_fields=EVENT_RESULT_FIELDS)
    return f"event {event.pk}: {event.status}" + (f" ({event.result or event.error})" if event.result or event.error else "")


def _run_handler(handler: WebhookHandler, event: WebhookEvent, outcome: WebhookHandlerOutcome) -> float | None | bool:
    """Run one handler and save its outcome; returns what ``_record`` does."""
    retry_after = _record(outcome, event, _run(handler, event))
    outcome.save()
    return retry_after


def _run(handler: WebhookHandler, event: WebhookEvent) -> HandlerResult:
    """What the handler returned, or the exception it raised."""
    try:
        return handler(event)
    except Exception as exc:  # a handler bug must not lose the event: _record keeps it failed and re-runnable
        return exc


def _run_many(many: BatchHandler, events: list[WebhookEvent]) -> list[HandlerResult]:
    """One entry per event from the handler's batch form; if it raises, every event gets that exception."""
    try:
        results = list(many(events))
    except Exception as exc:
        return [exc] * len(events)
    if len(results) != len(events):
        error = TypeError(f"{handler_id(many)} returned {len(results)} result(s) for {len(events)} event(s)")
        return [error] * len(events)
    return results


def _record(outcome: WebhookHandlerOutcome, event: WebhookEvent, result: HandlerResult) -> float | None | bool:
    """Set the (unsaved) outcome from what the handler returned or raised; returns False for a permanent
    failure, else the RetryLater's retry_after (None when it gave none or did not fail)."""
    retry_after: float | None | bool = None
    outcome.result, outcome.error = "", ""
    if isinstance(result, IgnoreEvent):
        outcome.status, outcome.error = WebhookHandlerOutcome.Status.IGNORED, str(result)
    elif isinstance(result, RetryLater):
        outcome.status, outcome.error, retry_after = WebhookHandlerOutcome.Status.FAILED, str(result), result.retry_after
    elif isinstance(result, EventFailed):
        outcome.status, outcome.error, retry_after = WebhookHandlerOutcome.Status.FAILED, str(result), False
        log.warning("webhook event %s (%s) failed in %s: %s", event.pk, event.field, outcome.handler, result)
    elif isinstance(result, (OperationalError, InterfaceError)):  # the connection was lost (or a deadlock): transient, retried
        outcome.status, outcome.error = WebhookHandlerOutcome.Status.FAILED, f"database error, retried: {result}"[:2000]
        log.warning("webhook event %s (%s): database error in %s: %s", event.pk, event.field, outcome.handler, result)
        if not db_connection.in_atomic_block:
            db_connection.close_if_unusable_or_obsolete()  # the outcome is saved on a new connection
    elif isinstance(result, Exception):  # a handler bug must not lose the event: it stays failed and re-runnable
        outcome.status, outcome.error, retry_after = WebhookHandlerOutcome.Status.FAILED, f"{type(result).__name__}: {result}", False
        log.error("webhook handler %s failed on event %s", outcome.handler, event.pk, exc_info=result)
    else:
        outcome.status = WebhookHandlerOutcome.Status.SKIPPED if result is None else WebhookHandlerOutcome.Status.PROCESSED
        outcome.result = (result or "")[:255]
    outcome.attempts += 1
    outcome.updated_at = timezone.now()
    return retry_after


def _settle_event(event: WebhookEvent, outcomes: list[WebhookHandlerOutcome], *, retry_after: float | None,
                  now: datetime | None = None) -> None:
    """The event's status from its handlers' outcomes, for the admin and the retry schedule
    (``retry_after`` None: no transient failure to retry, or a permanent one among them)."""
    now = now or timezone.now()
    Status = WebhookHandlerOutcome.Status
    results = [o.result for o in outcomes if o.status == Status.PROCESSED and o.result]
    ignored = [o.error for o in outcomes if o.status == Status.IGNORED]
    failures = [o.error for o in outcomes if o.status == Status.FAILED]
    event.result = "; ".join(results)[:255]
    event.processed_at = now
    event.next_attempt_at = None
    if failures:
        event.status, event.error = WebhookEvent.Status.FAILED, "; ".join(failures)
        if retry_after is not None and event.attempts < MAX_ATTEMPTS:
            event.next_attempt_at = now + _backoff(event.attempts, retry_after)
    elif results:
        event.status, event.error = WebhookEvent.Status.PROCESSED, "; ".join(ignored)
    else:
        event.status = WebhookEvent.Status.IGNORED
        event.error = "; ".join(ignored) or (f"no handler took this {event.field} change" if outcomes
                                               else f"no handler registered for field {event.field!r}")
        log.info("webhook event %s (%s %s) ignored: %s", event.pk, event.field, event.dedupe_key, event.error)


def process_events(event_ids: list[int]) -> str:
    """Process the events of one delivery in turn; returns a count per resulting status."""
    for event_id in event_ids:
        process_event(event_id)
    tally: dict[str, int] = defaultdict(int)
    for status in WebhookEvent.objects.filter(pk__in=event_ids).values_list("status", flat=True):
        tally[status] += 1
    return f"{len(event_ids)} webhook event(s): " + (", ".join(f"{n} {s}" for s, n in sorted(tally.items())) or "none found")


def _backoff(attempts: int, retry_after: float | None) -> timedelta:
    wait = max(timedelta(minutes=2 ** max(attempts - 1, 0)), timedelta(seconds=retry_after or 0))
    return min(wait, MAX_BACKOFF)


def due_event_ids(*, now=None, limit: int = 500) -> list[int]:
    """Events to run again: failed ones whose retry time has come, ones never picked up after
    arriving (the queue was down) and ones a crashed worker left in processing."""
    now = now or timezone.now()
    due = (Q(status=WebhookEvent.Status.FAILED, next_attempt_at__lte=now)
           | Q(status=WebhookEvent.Status.RECEIVED, received_at__lte=now - timedelta(minutes=10))
           | Q(status=WebhookEvent.Status.PROCESSING, claimed_at__lte=now - stuck_after()))
    return list(WebhookEvent.objects.filter(due).order_by("received_at", "id").values_list("pk", flat=True)[:limit])


def release_stuck(event_ids: list[int]) -> None:
    """Processing rows abandoned by a crashed worker become failed and due at once, so they can be claimed again
    (by the task the sweep queues next, or by a later sweep if that task is lost)."""
    now = timezone.now()
    WebhookEvent.objects.filter(pk__in=event_ids, status=WebhookEvent.Status.PROCESSING,
                                claimed_at__lte=now - stuck_after()).update(
        status=WebhookEvent.Status.FAILED, error="abandoned by a worker", next_attempt_at=now)
