"""Webhook bodies shaped like Meta's (see shared/meta/webhook_*.json) and a signed POST."""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

PAGE_ID = "1500001"
WABA_ID = "1200001"
PHONE_NUMBER_ID = "1300001"
DISPLAY_PHONE_NUMBER = "5491140000000"


def sign(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def encode(payload: dict[str, Any]) -> bytes:
    """Compact JSON with \\u escapes, as Meta sends it; the signature covers exactly these bytes."""
    return json.dumps(payload, separators=(",", ":")).encode()


@dataclass
class WebhookResponse:
    status_code: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> int:
        return self.status_code

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


def post_signed(url: str, payload: dict[str, Any], app_secret: str, *, signature: str | None = None,
                timeout: float = 10.0) -> WebhookResponse:
    body = encode(payload)
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "facebookexternalua",
        "X-Hub-Signature-256": signature if signature is not None else sign(body, app_secret)})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(request, timeout=timeout) as resp:
            return WebhookResponse(resp.status, resp.read(), dict(resp.headers))
    except urllib.error.HTTPError as err:
        return WebhookResponse(err.code, err.read(), dict(err.headers))


def _now() -> int:
    return int(time.time())


def _wamid() -> str:
    return "wamid.SBX" + secrets.token_hex(12).upper()


def _wa_value(phone_number_id: str, display_phone_number: str, **rest: Any) -> dict[str, Any]:
    return {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id}, **rest}


def _wa_envelope(field_name: str, value: dict[str, Any], waba_id: str, *, with_time: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": waba_id}
    if with_time:
        entry["time"] = _now()
    entry["changes"] = [{"field": field_name, "value": value}]
    return {"object": "whatsapp_business_account", "entry": [entry]}


def leadgen_payload(leadgen_id: str, form_id: str, ad_id: str, page_id: str = PAGE_ID, *,
                    created_time: int | None = None, adgroup_id: str | None = None) -> dict[str, Any]:
    created = created_time or _now()
    value = {"leadgen_id": leadgen_id, "page_id": page_id, "form_id": form_id,
             "adgroup_id": adgroup_id or ad_id, "ad_id": ad_id, "created_time": created}
    return {"object": "page", "entry": [{"id": page_id, "time": created + 1,
                                          "changes": [{"field": "leadgen", "value": value}]}]}


def ctwa_message_payload(wa_id: str, name: str, ad_id: str, headline: str, body: str, ctwa_clid: str,
                         text: str = "Hola, quiero más info", *, message_id: str | None = None,
                         timestamp: int | None = None, source_url: str = "https://fb.me/sandbox",
                         waba_id: str = WABA_ID, phone_number_id: str = PHONE_NUMBER_ID,
                         display_phone_number: str = DISPLAY_PHONE_NUMBER) -> dict[str, Any]:
    payload = plain_message_payload(wa_id, name, text, message_id=message_id, timestamp=timestamp, waba_id=waba_id,
                                    phone_number_id=phone_number_id, display_phone_number=display_phone_number)
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message["referral"] = {"source_url": source_url, "source_id": ad_id, "source_type": "ad",
                           "headline": headline, "body": body, "media_type": "image",
                           "image_url": "https://example.invalid/ad.jpg", "ctwa_clid": ctwa_clid}
    return payload


def plain_message_payload(wa_id: str, name: str, text: str, *, message_id: str | None = None,
                          timestamp: int | None = None, waba_id: str = WABA_ID,
                          phone_number_id: str = PHONE_NUMBER_ID,
                          display_phone_number: str = DISPLAY_PHONE_NUMBER) -> dict[str, Any]:
    message = {"from": wa_id, "id": message_id or _wamid(), "timestamp": str(timestamp or _now()),
               "type": "text", "text": {"body": text}}
    value = _wa_value(phone_number_id, display_phone_number,
                      contacts=[{"profile": {"name": name}, "wa_id": wa_id}], messages=[message])
    return _wa_envelope("messages", value, waba_id)


def status_event(wamid: str, status: str, recipient_id: str, biz_opaque_callback_data: str | None = None, *,
                 timestamp: int | None = None, error_code: int | None = None,
                 error_title: str = "Unable to deliver message.", category: str = "marketing",
                 conversation_id: str = "CONV_SBX") -> dict[str, Any]:
    """One item of `statuses`; `error_code` adds Meta's `errors` list (for status 'failed').
    'sent' and 'delivered' carry the conversation and pricing (category, billable), as Meta's do."""
    event: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(timestamp or _now()),
                             "recipient_id": recipient_id}
    if biz_opaque_callback_data is not None:
        event["biz_opaque_callback_data"] = biz_opaque_callback_data
    if status in ("sent", "delivered"):
        event["conversation"] = {"id": conversation_id, "origin": {"type": category}}
        event["pricing"] = {"billable": True, "pricing_model": "PMP", "category": category, "type": "regular"}
    if error_code is not None:
        event["errors"] = [{"code": error_code, "title": error_title, "message": error_title,
                            "error_data": {"details": error_title}}]
    return event


def statuses_payload(statuses: list[dict[str, Any]] | dict[str, Any], *, waba_id: str = WABA_ID,
                     phone_number_id: str = PHONE_NUMBER_ID,
                     display_phone_number: str = DISPLAY_PHONE_NUMBER) -> dict[str, Any]:
    items = [statuses] if isinstance(statuses, dict) else list(statuses)
    return _wa_envelope("messages", _wa_value(phone_number_id, display_phone_number, statuses=items), waba_id)


def template_status_payload(template_id: str | int, name: str, event: str, *, language: str = "es",
                            category: str = "MARKETING", reason: str | None = None,
                            other_info: dict[str, str] | None = None, waba_id: str = WABA_ID) -> dict[str, Any]:
    value: dict[str, Any] = {"event": event, "message_template_id": int(template_id), "message_template_name": name,
                             "message_template_language": language, "message_template_category": category,
                             "reason": reason}
    if other_info is not None:
        value["other_info"] = other_info
    return _wa_envelope("message_template_status_update", value, waba_id, with_time=True)


def user_preferences_payload(wa_id: str, value: str = "stop", *, name: str = "Sandbox User",
                             timestamp: int | None = None, waba_id: str = WABA_ID,
                             phone_number_id: str = PHONE_NUMBER_ID,
                             display_phone_number: str = DISPLAY_PHONE_NUMBER) -> dict[str, Any]:
    detail = f"User requested to {'stop' if value == 'stop' else 'resume'} marketing messages"
    preference = {"wa_id": wa_id, "detail": detail, "category": "marketing_messages", "value": value,
                  "timestamp": timestamp or _now()}
    body = _wa_value(phone_number_id, display_phone_number, contacts=[{"wa_id": wa_id, "profile": {"name": name}}],
                     user_preferences=[preference])
    return _wa_envelope("user_preferences", body, waba_id)
