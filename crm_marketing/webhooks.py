"""/webhooks/meta: verify, store, dedupe, hand each change to the app that registered its field.

The core never imports an app: apps call ``register_handler(field, fn)`` from AppConfig.ready().
Several handlers may take one field (``messages`` carries inbound messages for marketing and
statuses for automation). A handler gets the stored ``WebhookEvent`` and:

- returns ``None`` when the change is not its business (e.g. a statuses-only ``messages`` change),
- returns a short string saying what it did (the event becomes ``processed``),
- raises ``IgnoreEvent(reason)`` when the change maps to nothing of ours (``ignored``),
- raises ``RetryLater(message, retry_after)`` on a transient failure (``failed``, retried later); a
  database ``OperationalError`` (the connection was lost, a deadlock) counts as one,
- raises anything else on a permanent failure (``failed``; ``process_webhook_events`` re-runs it).

The outcome of each (event, handler) is a ``WebhookHandlerOutcome`` row: a retry runs only the
handlers that failed (and ones registered since), never one that already processed, skipped or
ignored the change. Handlers must still be idempotent: a worker killed mid-handler runs it again.
A handler that learns the event's account sets ``event.account``. Handlers are named like event
subscribers (``module.qualname``), so two handlers of one field need two names. A handler may have a
batch form (``register_handler(field, fn, many=fn_many)``): one call for many events, one result or
exception per event, as ``fn`` would return or raise it.

A delivery's changes are stored with one bulk insert. They are processed by a drain task that takes
every received event in batches, oldest first: the intake queues one only when none is waiting to
start (``request_drain``: a flag in the shared cache), so a burst of N webhooks costs a few tasks, not N.
A batch runs handler by handler (batch forms take all their events at once) and its outcomes and events
are written with one statement each.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections import defaultdict
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any, Callable, Optional, Union

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from crm_marketing.envelope import MAX_JSON_DEPTH, UNSTORABLE_TEXT, error_body, utc_timestamp
from crm_marketing.ratelimits import CACHE_DOWN, RateLimited, enforce_rate_limit
from crm_marketing.events import subscriber_id as handler_id
from crm_marketing.webhook_models import WebhookEvent, WebhookHandlerOutcome

log = logging.getLogger(__name__)

WebhookHandler = Callable[[WebhookEvent], Optional[str]]
HandlerResult = Union[str, None, Exception]  # what a handler returned, or the exception it raised
BatchHandler = Callable[[list[WebhookEvent]], list[HandlerResult]]
PROCESS_EVENTS_TASK = "crm_marketing.tasks.process_webhook_events"
DRAIN_TASK = "crm_marketing.tasks.drain_webhook_events"
DRAIN_QUEUED = "crm_marketing:webhooks:drain-queued"  # cache key: a drain task is queued and has not started
DRAIN_QUEUED_SECONDS = 30  # a queued drain the broker lost holds new ones back at most this long
MAX_ENTRY_TIME = 2**63 - 1  # entry.time goes in a bigint column
INSERT_CHUNK = 1000  # changes per INSERT statement (13 parameters each: far below PostgreSQL's 65,535)
MAX_ATTEMPTS = 8
MAX_BACKOFF = timedelta(hours=6)
STUCK_AFTER = timedelta(minutes=30)
_handlers: dict[str, list[WebhookHandler]] = defaultdict(list)
_batch_forms: dict[WebhookHandler, BatchHandler] = {}  # a handler's batch form (``register_handler(many=)``)


class IgnoreEvent(Exception):
    """The change belongs to no account of ours, or there is nothing to do with it."""


class RetryLater(Exception):
    """A transient failure (Meta throttling, a 5xx, the network): try the event again later."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class EventFailed(Exception):
    """An expected permanent failure (e.g. the token was rejected): kept failed until re-run by hand."""


# -- the registry --------------------------------------------------------------------------------------
def register_handler(field: str, handler: WebhookHandler, *, many: BatchHandler | None = None) -> None:
    """Let ``handler`` take changes of ``field``; registering the same function twice is a no-op.

    ``many``, the handler's batch form, takes a list of events and returns one entry per event, in order:
    what ``handler`` would return for it, or the exception it would raise (returned, not raised). A drain
    calls it instead of ``handler`` once per batch; if it raises, every event of the call gets that exception."""
    if many is not None:
        _batch_forms[handler] = many
    if handler in _handlers[field]:
        return
    if any(handler_id(other) == handler_id(handler) for other in _handlers[field]):
        raise ValueError(f"another handler of {field!r} is already registered as {handler_id(handler)!r}: give it another name")
    _handlers[field].append(handler)


def unregister_handler(field: str, handler: WebhookHandler) -> None:
    if handler in _handlers[field]:
        _handlers[field].remove(handler)
        if not any(handler in handlers for handlers in _handlers.values()):
            _batch_forms.pop(handler, None)


def handlers_for(field: str) -> list[WebhookHandler]:
    return list(_handlers.get(field, ()))


def batch_form(handler: WebhookHandler) -> BatchHandler | None:
    """The batch form ``handler`` was registered with (to register it again as it was)."""
    return _batch_forms.get(handler)


# -- dedupe keys ------------------------------------------------------------------------------------------
def _digest(data: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def dedupe_key(field: str, value: Any, *, entry_id: str = "", entry_time: Any = None) -> str:
    """Meta's own id for one change, so the same change delivered again gets the same key."""
    value = value if isinstance(value, dict) else {}
    parts: list[str] = []
    if field == "leadgen" and value.get("leadgen_id"):
        parts = [str(value["leadgen_id"])]
    elif field == "messages":
        parts = [f"msg:{m.get('id')}" for m in value.get("messages") or [] if isinstance(m, dict)]
        parts += [f"status:{s.get('id')}:{s.get('status')}" for s in value.get("statuses") or [] if isinstance(s, dict)]
    elif field == "message_template_status_update" and value.get("message_template_id") is not None:
        parts = [f"{value['message_template_id']}:{value.get('event')}:{entry_time}"]
    elif field == "user_preferences":
        parts = [f"{p.get('wa_id')}:{p.get('value')}:{p.get('timestamp')}"
                 for p in value.get("user_preferences") or [] if isinstance(p, dict)]
    key = "|".join(parts)
    if not key or len(key) > 200:
        return _digest({"entry": entry_id, "field": field, "value": value} if not key else key)
    return key


# -- the receiver ---------------------------------------------------------------------------------------------
def _error(status: int, code: str, message: str, **headers: str) -> JsonResponse:
    response = JsonResponse(error_body(code, message), status=status)
    for name, value in headers.items():
        response[name] = value
    return response


def signature_is_valid(body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256=") or not settings.META_APP_SECRET:
        return False  # an empty secret would let anyone sign
    expected = hmac.new(settings.META_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256="):].strip().lower())


def _changes(body: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per change: {object, entry_id, entry_time, field, payload}. Entries without `changes`
    (Messenger's `messaging`) are not subscribed to and only logged."""
    rows = []
    for entry in body.get("entry") or []:
        if not isinstance(entry, dict):
            continue
        changes = entry.get("changes")
        if not isinstance(changes, list):
            log.info("webhook entry without changes from %s ignored (keys: %s)", body.get("object"), sorted(entry))
            continue
        for change in changes:
            if isinstance(change, dict) and isinstance(change.get("field"), str):
                entry_time = entry.get("time")
                if isinstance(entry_time, bool) or not isinstance(entry_time, int) or not 0 <= entry_time <= MAX_ENTRY_TIME:
                    entry_time = None
                rows.append({"object": str(body.get("object") or "")[:64], "entry_id": str(entry.get("id") or "")[:64],
                             "entry_time": entry_time, "field": change["field"][:64], "payload": change})
    return rows


def store_changes(body: dict[str, Any]) -> tuple[int, list[int]]:
    """Store every change not seen before; returns (changes received, ids of the new events), which a
    drain task processes once the rows are committed (``request_drain``).

    One ``INSERT … ON CONFLICT (field, dedupe_key) DO NOTHING RETURNING id`` per thousand changes: the
    database skips what is stored already (dedupe stays a constraint) and names exactly the rows this
    call inserted, so a concurrent redelivery stores and queues nothing. A single statement needs no
    transaction of its own (the webhook answer's hot path: one round trip); several, or the ORM broker
    (its task row goes in with the events), run in one."""
    rows = _changes(body)
    candidates: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = dedupe_key(row["field"], row["payload"].get("value"), entry_id=row["entry_id"], entry_time=row["entry_time"])
        candidates.setdefault((row["field"], key), {**row, "dedupe_key": key})
    if not candidates:
        return len(rows), []
    events = list(candidates.values())
    chunks = [events[i:i + INSERT_CHUNK] for i in range(0, len(events), INSERT_CHUNK)]
    intake, now = uuid.uuid4().hex, timezone.now()
    with transaction.atomic() if len(chunks) > 1 else nullcontext():
        new_ids = sorted(pk for chunk in chunks for pk in _insert_new(chunk, intake=intake, received_at=now))
        if new_ids:  # a broker outage leaves the rows to the retry sweep, never fails the answer
            transaction.on_commit(request_drain, robust=True)
    if len(new_ids) < len(rows):
        log.info("webhook delivery of %s change(s): %s already stored, redelivery ignored", len(rows), len(rows) - len(new_ids))
    return len(rows), new_ids


# The columns a new event is inserted with: per change, then what every new event starts with (the rest is NULL).
_PER_CHANGE = ("object", "entry_id", "entry_time", "field", "dedupe_key", "payload")
_PER_DELIVERY = ("received_at", "intake_id")
_INITIAL = {"status": f"'{WebhookEvent.Status.RECEIVED.value}'", "result": "''", "error": "''", "attempts": "0"}  # SQL literals


def _insert_new(events: list[dict[str, Any]], *, intake: str, received_at) -> list[int]:
    """Insert the events whose (field, dedupe_key) is new; the ids of those inserted. (bulk_create with
    ignore_conflicts cannot say which rows it inserted; PostgreSQL and SQLite 3.35+ both speak this.)
    Rows are built from the parsed changes directly: 500 model instances and 6,500 field preparations
    were most of a large delivery's answer time. On PostgreSQL the changes go as one JSON array that the
    database unpacks (``jsonb_array_elements``): psycopg interpolates parameters client-side, and splitting
    a VALUES list of 4,000 placeholders took 60 % of a 500-change delivery's CPU (arrays per column, quoted
    element by element in Python, as much); this statement is short and the same for every delivery."""
    ops, meta = db_connection.ops, WebhookEvent._meta
    column = {name: ops.quote_name(meta.get_field(name).column) for name in (*_PER_CHANGE, *_PER_DELIVERY, *_INITIAL)}
    into = f"INSERT INTO {ops.quote_name(meta.db_table)} ({', '.join(column[n] for n in (*_PER_CHANGE, *_PER_DELIVERY, *_INITIAL))}) "
    conflict = (f" ON CONFLICT ({column['field']}, {column['dedupe_key']}) DO NOTHING "
                f"RETURNING {ops.quote_name(meta.pk.column)}")
    initial = ", ".join(_INITIAL.values())
    received = meta.get_field("received_at").get_db_prep_save(received_at, db_connection)
    if db_connection.vendor == "postgresql":
        sql = (into + f"SELECT r->>'o', r->>'e', (r->>'t')::bigint, r->>'f', r->>'k', r->'p', %s, %s, {initial} "
               "FROM jsonb_array_elements(%s::jsonb) AS r" + conflict)
        rows = [dict(zip("oetfkp", (event[name] for name in _PER_CHANGE))) for event in events]
        params = [received, intake, json.dumps(rows)]
    else:
        row = "(" + ", ".join(["%s"] * (len(_PER_CHANGE) + len(_PER_DELIVERY))) + f", {initial})"
        sql = into + f"VALUES {', '.join([row] * len(events))}" + conflict
        params = [value for event in events for value in (*(event[name] for name in _PER_CHANGE[:-1]),
                                                          json.dumps(event["payload"]), received, intake)]
    with db_connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [pk for (pk,) in cursor.fetchall()]


def queue_events(event_ids: list[int]) -> None:
    """One task for these stored events (the retry sweep's batch), queued now."""
    from django_q.tasks import async_task

    async_task(PROCESS_EVENTS_TASK, list(event_ids), task_name=_task_name(event_ids))


def request_drain() -> None:
    """Queue a drain task, unless one is queued already and has not started: that one will find the events
    committed before this call (a drain clears the flag before it looks for events, so whatever is committed
    after it cleared the flag queues a new one). Without a cache every process shares (the embedded default
    with a separate qcluster) or while the cache is down, every call queues a task, as one per delivery did."""
    from django_q.conf import Conf
    from django_q.tasks import async_task

    flagged = settings.CACHE_IS_SHARED or Conf.SYNC
    if flagged:
        try:
            if not cache.add(DRAIN_QUEUED, 1, timeout=DRAIN_QUEUED_SECONDS):
                return
        except CACHE_DOWN as exc:
            log.warning("webhook drain flag unavailable (%s); queueing a drain anyway", type(exc).__name__)
            flagged = False
    try:
        async_task(DRAIN_TASK, save=False)
    except Exception:
        if flagged:
            _clear_drain_flag()  # nothing is queued: the next delivery must try again
        raise


def _clear_drain_flag() -> None:
    try:
        cache.delete(DRAIN_QUEUED)
    except CACHE_DOWN as exc:  # it expires on its own (DRAIN_QUEUED_SECONDS); the retry sweep covers the rest
        log.warning("webhook drain flag not cleared (%s)", type(exc).__name__)


def _task_name(event_ids: list[int]) -> str:
    return f"webhook-events-{event_ids[0]}" + (f"-and-{len(event_ids) - 1}-more" if len(event_ids) > 1 else "")


@csrf_exempt
@require_http_methods(["GET", "POST"])
def meta_webhook(request: HttpRequest) -> HttpResponse:
    try:
        enforce_rate_limit(request, group="webhooks", rate=settings.WEBHOOK_RATE_LIMIT)
    except RateLimited as exc:
        return _error(429, exc.code, exc.message, **{"Retry-After": str(exc.retry_after)})
    if request.method == "GET":
        return _verify_subscription(request)
    try:
        raw = request.body
    except RequestDataTooBig:
        return _error(413, "request_too_large", "The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE.")
    if not signature_is_valid(raw, request.headers.get("X-Hub-Signature-256")):
        log.warning("webhook with a missing or wrong signature rejected")
        return _error(401, "invalid_signature", "X-Hub-Signature-256 is missing or does not match the body.")
    try:
        body = json.loads(raw)
        body = _storable(body) if _ESCAPED_UNSTORABLE.search(raw) else _within_depth(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _error(400, "malformed_request", "The body is not JSON (or is nested too deeply for a Meta event).")
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        return _error(400, "malformed_request", "Expected a JSON object with an `entry` list.")
    received, new_ids = store_changes(body)
    return JsonResponse({"success": True, "data": {"received": received, "stored": len(new_ids)}, "timestamp": utc_timestamp()})


# In JSON text a NUL or a lone surrogate can only arrive escaped (a raw one is refused by the parser or is
# not UTF-8): a body without such an escape needs no rewriting, only the depth check.
_ESCAPED_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def _within_depth(value: Any) -> Any:
    """``value`` unchanged when nothing in it sits deeper than MAX_JSON_DEPTH (``_storable``'s limit)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        container, depth = stack.pop()
        items = container.values() if isinstance(container, dict) else container
        if items and depth + 1 > MAX_JSON_DEPTH:
            raise ValueError("nested too deeply")
        stack.extend((item, depth + 1) for item in items if isinstance(item, (dict, list)))
    return value


def _storable(value: Any, depth: int = 1) -> Any:
    """The decoded body with the text PostgreSQL cannot store (NUL, unpaired surrogates) replaced by
    U+FFFD: Meta relays what users type, and one odd character must not lose the delivery."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError("nested too deeply")
    if isinstance(value, str):
        return UNSTORABLE_TEXT.sub("\ufffd", value)
    if isinstance(value, list):
        return [_storable(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {_storable(key, depth + 1): _storable(item, depth + 1) for key, item in value.items()}
    return value


def _verify_subscription(request: HttpRequest) -> HttpResponse:
    mode = request.GET.get("hub.mode")
    token = request.GET.get("hub.verify_token") or ""
    challenge = request.GET.get("hub.challenge") or ""
    expected = settings.META_WEBHOOK_VERIFY_TOKEN
    if mode == "subscribe" and expected and hmac.compare_digest(token.encode(), expected.encode()):
        return HttpResponse(challenge, content_type="text/plain")
    return _error(403, "permission_denied", "Wrong verify token.")


urlpatterns = [path("meta", meta_webhook, name="meta-webhook")]


# -- processing ----------------------------------------------------------------------------------------------
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
    _gather()
    _clear_drain_flag()  # first: an event committed from now on queues a new drain or is found below
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


def _gather() -> None:
    """Let a burst gather before the drain claims it: while the flag is still set, the deliveries arriving
    queue no drain of their own, so at 65 statuses a second a drain takes a batch instead of two or three
    events, and each drain's fixed cost (the task, the claim, the writes) is paid once per batch. Only with
    the shared flag (a separate qcluster); the statuses' processing waits this long, their answer does not."""
    from django_q.conf import Conf

    if settings.WEBHOOK_DRAIN_GATHER_SECONDS > 0 and settings.CACHE_IS_SHARED and not Conf.SYNC:
        time.sleep(settings.WEBHOOK_DRAIN_GATHER_SECONDS)


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
    except Exception:  # noqa: BLE001 - the stuck sweep takes them in STUCK_AFTER; the first error is the one to report
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
                many = _batch_forms.get(handler)
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
    fields whose values differ (typically ``result`` alone): Django's CASE of every field for every event cost
    2 ms of CPU per event, more than the rest of a status's processing."""
    updates: dict[str, Any] = {}
    for name in EVENT_RESULT_FIELDS:
        field = WebhookEvent._meta.get_field(name)
        values = [getattr(event, field.attname) for event in events]
        if all(value == values[0] for value in values):
            updates[field.attname] = values[0]
            continue
        case = Case(*[When(pk=event.pk, then=Value(value, output_field=field)) for event, value in zip(events, values)],
                    output_field=field)
        updates[field.attname] = Cast(case, output_field=field) if db_connection.features.requires_casted_case_in_updates else case
    WebhookEvent.objects.filter(pk__in=[event.pk for event in events]).update(**updates)


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
           | Q(status=WebhookEvent.Status.PROCESSING, claimed_at__lte=now - STUCK_AFTER))
    return list(WebhookEvent.objects.filter(due).order_by("received_at", "id").values_list("pk", flat=True)[:limit])


def release_stuck(event_ids: list[int]) -> None:
    """Processing rows abandoned by a crashed worker become failed so they can be claimed again."""
    WebhookEvent.objects.filter(pk__in=event_ids, status=WebhookEvent.Status.PROCESSING,
                                claimed_at__lte=timezone.now() - STUCK_AFTER).update(
        status=WebhookEvent.Status.FAILED, error="abandoned by a worker")
