"""Automation's Meta webhook handlers (registered in AutomationConfig.ready()).

``messages``: the ``statuses`` of our sends (sent, delivered, read, failed) move each send forward
only, found by ``biz_opaque_callback_data`` (our id) or the wamid, within the account of the
WhatsApp channel the change names; the webhook drain hands a batch of them to ``handle_statuses_many``.
``user_preferences``: stop / resume marketing messages.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.utils import timezone

from automation.engine.optout import set_opt_out
from automation.engine.outcomes import OPT_OUT_CODE
from automation.engine.statuses import Move, Outcome, advance_many
from automation.models import MessageSend
from crm_marketing.models import Lead
from crm_marketing.webhook_models import WebhookEvent
from crm_marketing.webhooks import IgnoreEvent
from meta_oauth.models import WhatsAppChannel

log = logging.getLogger(__name__)
STATUS_MAP = {"sent": MessageSend.Status.SENT, "delivered": MessageSend.Status.DELIVERED,
              "read": MessageSend.Status.READ, "failed": MessageSend.Status.FAILED}


def _channel(value: dict) -> WhatsAppChannel:
    phone_number_id = _phone_number_id(value)
    channel = WhatsAppChannel.objects.select_related("account").filter(meta_phone_number_id=phone_number_id).first() \
        if phone_number_id else None
    if channel is None:
        raise IgnoreEvent(f"no account has the WhatsApp phone number id {phone_number_id or '(none)'}")
    return channel


def _epoch(value) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(int(value), tz=dt.timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def handle_statuses(event: WebhookEvent) -> str | None:
    result = _statuses([event])[0]
    if isinstance(result, Exception):
        raise result
    return result


def handle_statuses_many(events: list[WebhookEvent]) -> list[str | None | Exception]:
    """``handle_statuses`` of a batch (the webhook drain's), one entry per event: a query for the channels,
    one or two for the sends and ``advance_many``."""
    return _statuses(events)


@dataclass
class _Item:
    """One item of an event's ``statuses``, and the send it names once found."""
    raw: dict
    new_status: str | None
    account_id: int
    ours: int | None  # biz_opaque_callback_data: our send id
    wamid: str
    send: dict | None = None  # pk, account_id, lead_id, status, meta_message_id
    move: Move | None = None
    outcome: Outcome | Exception | None = None


def _statuses(events: list[WebhookEvent]) -> list[str | None | Exception]:
    """One entry per event: what it did, None for a change without statuses, or the exception for the event
    (IgnoreEvent for an unknown phone number id or no send of ours; a malformed item's error)."""
    results: list[str | None | Exception] = [None] * len(events)
    changes: dict[int, tuple[str, list[dict]]] = {}
    for n, event in enumerate(events):
        try:
            value = event.value
            items = [s for s in value.get("statuses") or [] if isinstance(s, dict)]
            if items:  # else inbound messages: marketing's business
                changes[n] = (_phone_number_id(value), items)
        except Exception as exc:  # noqa: BLE001 - a malformed change fails alone
            results[n] = exc
    if not changes:
        return results
    phone_ids = {phone_number_id for phone_number_id, _ in changes.values() if phone_number_id}
    channels = {c.meta_phone_number_id: c for c in
                WhatsAppChannel.objects.select_related("account").filter(meta_phone_number_id__in=phone_ids)} if phone_ids else {}
    found: dict[int, list[_Item]] = {}
    for n, (phone_number_id, items) in changes.items():
        channel = channels.get(phone_number_id) if phone_number_id else None
        if channel is None:
            results[n] = IgnoreEvent(f"no account has the WhatsApp phone number id {phone_number_id or '(none)'}")
            continue
        events[n].account = channel.account
        try:
            found[n] = [_item(item, channel.account_id) for item in items]
        except Exception as exc:  # noqa: BLE001
            results[n] = exc
    _find_sends([item for items in found.values() for item in items])
    movers: list[_Item] = []
    for n, items in list(found.items()):
        try:
            for item in items:
                item.move = _move(item) if item.send is not None else None
        except Exception as exc:  # noqa: BLE001
            results[n] = exc
            del found[n]
            continue
        movers += [item for item in items if item.move is not None]
    for item, outcome in zip(movers, advance_many([item.move for item in movers])):
        item.outcome = outcome
    for n, items in found.items():
        try:
            results[n] = _result(items)
        except Exception as exc:  # noqa: BLE001
            results[n] = exc
    return results


def _phone_number_id(value: dict) -> str:
    return str((value.get("metadata") or {}).get("phone_number_id") or "")


def _item(item: dict, account_id: int) -> _Item:
    new_status = STATUS_MAP.get(str(item.get("status") or ""))
    ours = str(item.get("biz_opaque_callback_data") or "")
    return _Item(item, new_status, account_id, int(ours) if new_status and ours.isdigit() and len(ours) < 19 else None,
                 str(item.get("id") or ""))


def _find_sends(items: list[_Item]) -> None:
    """Each item's send, within its channel's account: by our id, else by the wamid (two queries at most)."""
    fields = ("pk", "account_id", "lead_id", "status", "meta_message_id")
    wanted = [item for item in items if item.new_status]
    ids = {item.ours for item in wanted if item.ours is not None}
    by_pk = {row["pk"]: row for row in MessageSend.objects.filter(pk__in=ids).values(*fields)} if ids else {}
    for item in wanted:
        send = by_pk.get(item.ours)
        item.send = send if send is not None and send["account_id"] == item.account_id else None
    wamids = {item.wamid for item in wanted if item.send is None and item.wamid}
    by_wamid = {row["meta_message_id"]: row for row in MessageSend.objects.filter(meta_message_id__in=wamids).values(*fields)} \
        if wamids else {}
    for item in wanted:
        if item.send is None and item.wamid:
            send = by_wamid.get(item.wamid)  # a wamid is unique: another account's send is none of ours
            item.send = send if send is not None and send["account_id"] == item.account_id else None


def _move(found: _Item) -> Move:
    item = found.raw
    errors = [e for e in item.get("errors") or [] if isinstance(e, dict)]
    error = errors[0] if errors else {}
    pricing = item.get("pricing") if isinstance(item.get("pricing"), dict) else {}
    return Move(
        found.send["pk"], found.new_status, at=_epoch(item.get("timestamp")) or timezone.now(),
        seen_status=found.send["status"], seen_wamid=found.send["meta_message_id"], wamid=found.wamid,
        error_code=error.get("code") if isinstance(error.get("code"), int) else None,
        error_title=str(error.get("title") or error.get("message") or ""),
        error_details=str((error.get("error_data") or {}).get("details") or "") if isinstance(error.get("error_data"), dict) else "",
        pricing_category=str(pricing.get("category") or ""),
        billable=pricing["billable"] if isinstance(pricing.get("billable"), bool) else None)


def _result(items: list[_Item]) -> str:
    """The event's result after its moves; a failure with 131050 opts the lead out."""
    applied, unknown = [], 0
    for item in items:
        if item.move is None or item.outcome is None:
            unknown += 1
            continue
        outcome, send_id = item.outcome, item.send["pk"]
        if isinstance(outcome, Exception):
            raise outcome  # as advance raised it: the event fails (its earlier statuses stay applied)
        if item.new_status == MessageSend.Status.FAILED and item.move.error_code == OPT_OUT_CODE:
            set_opt_out(item.send["lead_id"], opted_out=True)
        applied.append(f"send {send_id} {outcome.current}" if outcome.moved else f"send {send_id} stays {outcome.previous}")
    if not applied:
        raise IgnoreEvent(f"{unknown} status(es) for messages that are not automation sends")
    return "; ".join(applied)[:255]


def handle_user_preferences(event: WebhookEvent) -> str:
    value = event.value
    channel = _channel(value)
    event.account = channel.account
    done = []
    for preference in value.get("user_preferences") or []:
        if not isinstance(preference, dict) or preference.get("value") not in ("stop", "resume"):
            continue
        digits = "".join(ch for ch in str(preference.get("wa_id") or "") if ch.isdigit())
        lead = Lead.objects.filter(account=channel.account, phone=f"+{digits}").first() if digits else None
        if lead is None:
            done.append(f"{preference.get('value')} from unknown number {digits}")
            continue
        stop = preference["value"] == "stop"
        set_opt_out(lead, opted_out=stop, at=_epoch(preference.get("timestamp")))
        done.append(f"lead {lead.pk} {'opted out' if stop else 'opted in again'}")
    if not done:
        raise IgnoreEvent("no stop or resume preference in the change")
    return "; ".join(done)[:255]
