"""WhatsApp Cloud API messaging in the sandbox: `POST /{phone_number_id}/messages` with Meta's limits
(throughput per number per second -> 130429, one message per recipient per 6 s -> 131056, opted-out
recipients -> 131050), and the status webhooks that follow an accepted send, per a scriptable plan."""
from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from . import webhooks
from .request import GraphFault, GraphRequest

PAIR_RATE_SECONDS = 6.0
STATUS_ORDER = ("sent", "delivered", "read")
ERROR_TITLES = {
    131026: "Message undeliverable.",
    131047: "Re-engagement message.",
    131048: "Spam rate limit hit.",
    131049: "This message was not delivered to maintain healthy ecosystem engagement.",
    131050: "Unable to deliver message. User has stopped marketing messages.",
}


@dataclass
class StatusPlan:
    statuses: list[str] = field(default_factory=lambda: list(STATUS_ORDER))
    delay_seconds: float = 0.0
    reorder: bool = False
    duplicate: bool = False
    fail_code: int | None = None


@dataclass
class Traffic:
    """Counters behind the limits, and who opted out. Guarded by the state's lock."""

    accepted_per_second: dict[tuple[str, int], int] = field(default_factory=dict)
    refused: dict[int, int] = field(default_factory=dict)  # error code -> sends refused for a limit
    last_accepted_to: dict[tuple[str, str], float] = field(default_factory=dict)
    opted_out: set[str] = field(default_factory=set)
    plan: StatusPlan = field(default_factory=StatusPlan)
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def max_per_second(self, phone_number_id: str) -> int:
        return max((n for (phone, _), n in self.accepted_per_second.items() if phone == phone_number_id), default=0)


def _fault(code: int, message: str, details: str) -> GraphFault:
    return GraphFault(message, code=code, status=400,
                      extra={"error_data": {"messaging_product": "whatsapp", "details": details}})


def _template_of(state: Any, waba_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
    template = body.get("template")
    template = json.loads(template) if isinstance(template, str) else template or {}
    language = (template.get("language") or {}).get("code")
    matches = [t for t in state.wabas[waba_id].get("message_templates", [])
               if t["name"] == template.get("name") and (language is None or t["language"] == language)]
    for candidate in matches:
        if candidate["status"] == "APPROVED":
            return candidate
    for candidate in matches:
        if candidate["status"] in ("PAUSED", "DISABLED"):
            code = 132015 if candidate["status"] == "PAUSED" else 132016
            raise _fault(code, f"(#{code}) Template is {candidate['status'].lower()}",
                         f"Template {candidate['name']} is {candidate['status'].lower()} because of low quality.")
    details = f"template name ({template.get('name')}) does not exist in {language}"
    raise _fault(132001, "(#132001) Template name does not exist in the translation", details)


def send_message(state: Any, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    body = req.body if isinstance(req.body, dict) else {}
    if body.get("messaging_product") != "whatsapp":
        raise GraphFault("(#100) The parameter messaging_product is required.", code=100)
    to = str(body.get("to") or "")
    if not to:
        raise GraphFault("(#100) The parameter to is required.", code=100)
    phone = state.phone_numbers[node]
    kind = body.get("type", "text")
    template = None
    if kind == "template":
        template = _template_of(state, phone["_waba_id"], body)
    elif kind == "text" and not (body.get("text") or {}).get("body"):
        raise GraphFault("(#100) The parameter text['body'] is required.", code=100)
    wa_id = "".join(c for c in to if c.isdigit())
    traffic: Traffic = state.traffic
    now = time.time()
    second = (node, int(now))
    if traffic.accepted_per_second.get(second, 0) >= int(phone["_throughput_mps"]):
        traffic.refused[130429] = traffic.refused.get(130429, 0) + 1
        raise _fault(130429, "(#130429) Rate limit hit",
                     "Cloud API message throughput has been reached.")
    last = traffic.last_accepted_to.get((node, wa_id))
    if last is not None and now - last < PAIR_RATE_SECONDS:
        traffic.refused[131056] = traffic.refused.get(131056, 0) + 1
        raise _fault(131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                     "Message failed to send because there were too many messages sent from this phone number "
                     "to the same phone number in a short period of time.")
    if wa_id in traffic.opted_out:
        raise _fault(131050, "(#131050) Unable to deliver message. User has stopped marketing messages.",
                     "This user has stopped receiving marketing messages from the business.")
    traffic.accepted_per_second[second] = traffic.accepted_per_second.get(second, 0) + 1
    traffic.last_accepted_to[(node, wa_id)] = now
    wamid = f"wamid.SBX{wa_id}{state.next_id():>08}"
    sent = dict(body, wamid=wamid, phone_number_id=node, sent_at=now)
    state.sent_messages.append(sent)
    emit_statuses(state, sent, wa_id, category=str((template or {}).get("category") or "service").lower())
    message: dict[str, Any] = {"id": wamid}
    if kind == "template":
        message["message_status"] = "accepted"
    return {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": wa_id}], "messages": [message]}


def _status_items(plan: StatusPlan) -> list[str]:
    if plan.fail_code is not None:
        return ["sent", "failed"]
    return list(plan.statuses)


def emit_statuses(state: Any, sent: dict[str, Any], wa_id: str, *, category: str) -> None:
    """One statuses webhook per status of the plan, for this wamid (shape of webhook_statuses.json)."""
    traffic: Traffic = state.traffic
    plan = traffic.plan
    phone = state.phone_numbers[sent["phone_number_id"]]
    base = int(sent["sent_at"])
    conversation = "CONV_SBX" + wa_id
    payloads: list[tuple[int, dict[str, Any]]] = []
    for step, status in enumerate(_status_items(plan)):
        error = plan.fail_code if status == "failed" else None
        item = webhooks.status_event(sent["wamid"], status, wa_id, sent.get("biz_opaque_callback_data"),
                                     timestamp=base + step, error_code=error,
                                     error_title=ERROR_TITLES.get(error or 0, "Unable to deliver message."),
                                     category=category, conversation_id=conversation)
        payload = webhooks.statuses_payload(item, waba_id=phone["_waba_id"], phone_number_id=phone["id"],
                                            display_phone_number=phone["_display_digits"])
        payloads += [(step, payload)] + ([(step, copy.deepcopy(payload))] if plan.duplicate else [])
    if plan.reorder and len({step for step, _ in payloads}) > 1:
        in_order = [step for step, _ in payloads]
        while [step for step, _ in payloads] == in_order:  # shuffled, never by chance the plan's order
            traffic.rng.shuffle(payloads)
    for position, (_, payload) in enumerate(payloads):
        state.outbox.emit(payload, delay=plan.delay_seconds * (position + 1))
