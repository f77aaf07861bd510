"""Automation's Meta webhook handlers (registered in AutomationConfig.ready()).

``messages``: the ``statuses`` of our sends (sent, delivered, read, failed) move each send forward
only, found by ``biz_opaque_callback_data`` (our id) or the wamid, within the account of the
WhatsApp channel the change names. ``user_preferences``: stop / resume marketing messages.
"""
from __future__ import annotations

import datetime as dt
import logging

from django.utils import timezone

from automation.engine.optout import set_opt_out
from automation.engine.outcomes import OPT_OUT_CODE
from automation.engine.statuses import advance
from automation.models import MessageSend
from crm_marketing.models import Lead
from crm_marketing.webhook_models import WebhookEvent
from crm_marketing.webhooks import IgnoreEvent
from meta_oauth.models import WhatsAppChannel

log = logging.getLogger(__name__)
STATUS_MAP = {"sent": MessageSend.Status.SENT, "delivered": MessageSend.Status.DELIVERED,
              "read": MessageSend.Status.READ, "failed": MessageSend.Status.FAILED}


def _channel(value: dict) -> WhatsAppChannel:
    phone_number_id = str((value.get("metadata") or {}).get("phone_number_id") or "")
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


def _find_send(account_id: int, item: dict) -> MessageSend | None:
    sends = MessageSend.objects.filter(account_id=account_id)
    ours = str(item.get("biz_opaque_callback_data") or "")
    if ours.isdigit() and len(ours) < 19:
        send = sends.filter(pk=int(ours)).first()
        if send is not None:
            return send
    wamid = str(item.get("id") or "")
    return sends.filter(meta_message_id=wamid).first() if wamid else None


def handle_statuses(event: WebhookEvent) -> str | None:
    value = event.value
    items = [s for s in value.get("statuses") or [] if isinstance(s, dict)]
    if not items:
        return None  # inbound messages: marketing's business
    channel = _channel(value)
    event.account = channel.account
    applied, unknown = [], 0
    for item in items:
        new_status = STATUS_MAP.get(str(item.get("status") or ""))
        send = _find_send(channel.account_id, item) if new_status else None
        if send is None:
            unknown += 1
            continue
        errors = [e for e in item.get("errors") or [] if isinstance(e, dict)]
        error = errors[0] if errors else {}
        pricing = item.get("pricing") if isinstance(item.get("pricing"), dict) else {}
        code = error.get("code") if isinstance(error.get("code"), int) else None
        outcome = advance(
            send.pk, new_status, at=_epoch(item.get("timestamp")) or timezone.now(), wamid=str(item.get("id") or ""),
            error_code=code, error_title=str(error.get("title") or error.get("message") or ""),
            error_details=str((error.get("error_data") or {}).get("details") or "") if isinstance(error.get("error_data"), dict) else "",
            pricing_category=str(pricing.get("category") or ""),
            billable=pricing["billable"] if isinstance(pricing.get("billable"), bool) else None)
        if new_status == MessageSend.Status.FAILED and code == OPT_OUT_CODE:
            set_opt_out(send.lead_id, opted_out=True)
        applied.append(f"send {send.pk} {outcome.current}" if outcome.moved else f"send {send.pk} stays {outcome.previous}")
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
