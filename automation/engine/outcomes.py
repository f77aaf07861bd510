"""What a batch's sends became, written in bulk: ``unknown`` just before their POSTs leave, the ones
Meta accepted ``sent`` with their wamid, and Meta's errors one by one with sender.py's rules (retry
later, opt the lead out, flag the rule, fail; a timeout leaves the send ``unknown``)."""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from automation.engine import bulk, claiming, limiter
from automation.engine.optout import set_opt_out
from automation.engine.statuses import advance
from automation.models import AutomationRule, MessageSend
from crm_marketing.graph import GraphError
from meta_oauth.services import note_graph_error

Status = MessageSend.Status

OPT_OUT_CODE = 131050
PAIR_RATE_CODE = 131056
RETRY_CODES = frozenset({4, 80007, 130429, 131048, PAIR_RATE_CODE, 131049, 1, 2})
TEMPLATE_CODES = frozenset({*range(132000, 132017), 132068, 132069})
MAX_ATTEMPTS = 10
NOT_CONNECTED_RETRY = dt.timedelta(minutes=15)


@dataclass(eq=False)
class Outgoing:
    """A send that passed its re-checks and holds its limiter slots: what to POST, and where."""

    send: MessageSend
    channel_id: int
    phone_number_id: str
    throughput_mps: int
    recipient: str
    components: list[dict[str, Any]]
    body: dict[str, Any]


def mark_unknown(outgoing: list[Outgoing], claimed_at: dt.datetime) -> list[Outgoing]:
    """``sending -> unknown`` in one UPDATE, with the channel and parameters each send goes out with.
    From here on a request may reach Meta: a worker killed later leaves these ``unknown``, never re-sent.
    Returns the ones this claim still held (a send whose lease ran out is another worker's now)."""
    if not outgoing:
        return []
    mine = bulk.update_sends({out.send.pk: {"channel_id": out.channel_id, "parameters": out.components} for out in outgoing},
                             set_all={"status": Status.UNKNOWN, "updated_at": timezone.now()},
                             where={"status": Status.SENDING, "claimed_at": claimed_at})
    return [out for out in outgoing if out.send.pk in mine]


def unmark_unknown(outgoing: list[Outgoing], claimed_at: dt.datetime) -> list[Outgoing]:
    """``unknown -> sending`` for sends whose POST was not made after all (see sender.LATE)."""
    if not outgoing:
        return []
    mine = set(MessageSend.objects.filter(pk__in=[out.send.pk for out in outgoing], status=Status.UNKNOWN,
                                          claimed_at=claimed_at).values_list("pk", flat=True))
    MessageSend.objects.filter(pk__in=mine, status=Status.UNKNOWN, claimed_at=claimed_at).update(
        status=Status.SENDING, updated_at=timezone.now())
    return [out for out in outgoing if out.send.pk in mine]


def record_sent(accepted: list[tuple[int, str, dt.datetime]]) -> None:
    """``unknown -> sent`` with each send's wamid and time, in one UPDATE. A send a status webhook moved
    first (or whose wamid another send holds) goes through ``advance``, which keeps what is further."""
    if not accepted:
        return
    try:
        with transaction.atomic():
            moved = bulk.update_sends({pk: {"sent_at": at, "meta_message_id": wamid[:128]} for pk, wamid, at in accepted},
                                      set_all={"status": Status.SENT, "updated_at": timezone.now()},
                                      where={"status": Status.UNKNOWN, "meta_message_id": ""})
    except IntegrityError:
        moved = set()
    for send_id, wamid, at in accepted:
        if send_id not in moved:
            advance(send_id, Status.SENT, wamid=wamid, at=at)


def wamid_of(answer: Any) -> str:
    messages = answer.get("messages") if isinstance(answer, dict) else None
    return str(messages[0].get("id") or "") if messages and isinstance(messages[0], dict) else ""


def after_error(send: MessageSend, claim: dt.datetime, error: GraphError, now: dt.datetime) -> str:
    """Meta (or the network) refused one POST: what becomes of the send."""
    if error.network:
        if not error.sent:  # the connection never opened: Meta cannot have seen it
            return retry_or_fail(send, claim, now + backoff(send.attempts), "network error before the request left")
        return unknown(send, claim, "no answer from Meta (timeout or dropped connection)")
    if error.garbled and (error.http_status or 0) < 300:  # a success whose body was cut off: Meta took it
        return unknown(send, claim, f"Meta's answer could not be read (HTTP {error.http_status})")
    code = error.code
    if error.is_token_invalid:
        note_graph_error(send.account, error)
        return retry_or_fail(send, claim, now + NOT_CONNECTED_RETRY, f"Meta rejected the token (code {code})")
    if code == OPT_OUT_CODE:
        set_opt_out(send.lead_id, opted_out=True, at=now)
        return fail(send, error)
    if code in TEMPLATE_CODES:
        AutomationRule.objects.filter(pk=send.rule_id).update(
            flagged_reason=f"Meta refused template {send.template_name} (code {code}): {error.message}"[:255])
        return fail(send, error)
    if code in RETRY_CODES or error.is_rate_limited or (error.http_status or 0) >= 500 or error.transient_flag:
        wait = backoff(send.attempts)
        if code == PAIR_RATE_CODE:
            wait = max(wait, dt.timedelta(seconds=limiter.PAIR_SECONDS))
        elif code == 131049:  # Meta's per-user marketing limit: not before tomorrow
            wait = dt.timedelta(hours=24)
        if error.retry_after:
            wait = max(wait, dt.timedelta(seconds=error.retry_after))
        return retry_or_fail(send, claim, now + wait, str(error))
    return fail(send, error)


def unknown(send: MessageSend, claim: dt.datetime, why: str) -> str:
    """The POST may have reached Meta: the row stays ``unknown`` for a status webhook or reconciliation."""
    MessageSend.objects.filter(pk=send.pk, status=Status.UNKNOWN, claimed_at=claim).update(
        error_title=why, updated_at=timezone.now())
    return "unknown"


def backoff(attempts: int) -> dt.timedelta:
    """5 s, 10 s, 20 s ... 30 min (plus jitter): after an error from Meta, not within the pass that met it."""
    return dt.timedelta(seconds=min(5 * 2 ** attempts, 1800) + random.random())


def retry_or_fail(send: MessageSend, claim: dt.datetime, retry_at: dt.datetime, why: str) -> str:
    if send.attempts + 1 >= MAX_ATTEMPTS:
        advance(send.pk, Status.FAILED, error_title=f"gave up after {MAX_ATTEMPTS} attempts", error_details=why)
        return "failed"
    claiming.release(send.pk, claim, retry_at=retry_at, error_details=why[:2000])
    return "retry"


def fail(send: MessageSend, error: GraphError) -> str:
    advance(send.pk, Status.FAILED, error_code=error.code, error_title=error.message[:255], error_details=str(error)[:2000])
    return "failed"
