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

A delivery's changes are stored with one insert. They are processed by a drain task
(crm_marketing.webhook_processing) that takes every received event in batches, oldest first: the intake
queues one only when none is waiting to start (``request_drain``: a flag in the shared cache), so a
burst of N webhooks costs a few tasks, not N.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import uuid
from collections import defaultdict
from contextlib import nullcontext
from typing import Any, Callable, Optional, Union

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.db import connection as db_connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from crm_marketing.envelope import MAX_JSON_DEPTH, UNSTORABLE_TEXT, error_body, utc_timestamp
from crm_marketing.queueing import clear_flag, queue_once
from crm_marketing.ratelimits import RateLimited, enforce_rate_limit
from crm_marketing.events import subscriber_id as handler_id
from crm_marketing.webhook_models import WebhookEvent

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
    """Queue a drain task, unless one is queued already and has not started (``queue_once``): it will find
    the events committed before this call."""
    queue_once(DRAIN_QUEUED, DRAIN_TASK, flag_seconds=DRAIN_QUEUED_SECONDS)


def clear_drain_flag() -> None:
    clear_flag(DRAIN_QUEUED)


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
