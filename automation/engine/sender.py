"""Sending one claimed send: re-check it, take a limiter slot, POST it once, record what Meta said.

The POST goes through the one Graph client, which never retries a POST that may have reached Meta;
this module decides from the row: a throughput or transient error goes back to the queue with
``next_attempt_at``, a timeout after the request left leaves the row ``unknown`` (settled by a status
webhook or reconciliation, never re-sent), 131050 opts the lead out, template errors flag the rule.
"""
from __future__ import annotations

import datetime as dt
import logging
import random

from django.db.models import Q
from django.utils import timezone

from automation.engine import claiming, limiter
from automation.engine.optout import set_opt_out
from automation.engine.planning import account_zone, in_quiet_hours, out_of_quiet_hours
from automation.engine.statuses import advance
from automation.models import AutomationRule, MessageSend
from automation.rendering import SendContext, graph_components, values_for
from crm_marketing.graph import GraphClient, GraphError
from crm_marketing.models import Opportunity
from meta_oauth.models import MetaConnection, WhatsAppChannel
from meta_oauth.services import note_graph_error

log = logging.getLogger(__name__)
Status, Skip = MessageSend.Status, MessageSend.SkipReason

OPT_OUT_CODE = 131050
PAIR_RATE_CODE = 131056
RETRY_CODES = frozenset({4, 80007, 130429, 131048, PAIR_RATE_CODE, 131049, 1, 2})
TEMPLATE_CODES = frozenset({*range(132000, 132017), 132068, 132069})
MAX_ATTEMPTS = 10
NOT_CONNECTED_RETRY = dt.timedelta(minutes=15)
LIMITER_DOWN_RETRY = dt.timedelta(seconds=10)
SENT_STATUSES = (Status.SENDING, Status.UNKNOWN, Status.SENT, Status.DELIVERED, Status.READ)


class SendSession:
    """Per-pass caches: one Graph client per account, the selected channel per account."""

    def __init__(self) -> None:
        self.clients: dict[int, GraphClient | None] = {}
        self.channels: dict[int, WhatsAppChannel | None] = {}

    def channel(self, account_id: int) -> WhatsAppChannel | None:
        if account_id not in self.channels:
            self.channels[account_id] = WhatsAppChannel.objects.filter(account_id=account_id, is_selected=True).first()
        return self.channels[account_id]

    def client(self, account_id: int) -> GraphClient | None:
        if account_id not in self.clients:
            connection = MetaConnection.objects.filter(account_id=account_id).first()
            client = None
            if connection is not None and connection.is_usable:
                try:
                    client = GraphClient(connection.get_token(), max_retries=1)
                except Exception:  # an unreadable token: treated as not connected (logged without the token)
                    log.error("Meta token of account %s cannot be read", account_id)
            self.clients[account_id] = client
        return self.clients[account_id]

    def close(self) -> None:
        for client in self.clients.values():
            if client is not None:
                client.close()


def skip_reason(send: MessageSend, now: dt.datetime, opportunities: list[Opportunity] | None = None) -> str:
    """Why this send must not go out now (a SkipReason value), or ''. ``opportunities``: the lead's."""
    rule, lead = send.rule, send.lead
    if rule is None or send.step_id is None or not rule.is_active:
        return Skip.RULE_INACTIVE
    if send.template is None or not send.template.is_approved:
        return Skip.TEMPLATE_NOT_APPROVED
    if lead.opted_out_at is not None:
        return Skip.OPTED_OUT
    if rule.exit_on_reply and lead.last_inbound_at is not None and lead.last_inbound_at > send.created_at:
        return Skip.LEAD_REPLIED
    if opportunities is None:
        opportunities = list(Opportunity.objects.filter(lead_id=lead.pk))
    if rule.exit_on_won and rule.trigger_type != AutomationRule.Trigger.OPPORTUNITY_WON \
            and any(o.stage == Opportunity.Stage.WON for o in opportunities):
        return Skip.OPPORTUNITY_WON
    if not lead.phone:
        return Skip.NO_PHONE
    if _sent_today(send, now) >= rule.max_sends_per_lead_per_day:
        return Skip.CAP_REACHED
    return ""


def _sent_today(send: MessageSend, now: dt.datetime) -> int:
    """Automatic messages the lead got (or may have got) today, in the account's timezone, any rule."""
    zone = account_zone(send.account)
    start = dt.datetime.combine(now.astimezone(zone).date(), dt.time.min, tzinfo=zone)
    return MessageSend.objects.filter(lead_id=send.lead_id, status__in=SENT_STATUSES).exclude(pk=send.pk).filter(
        Q(sent_at__gte=start) | Q(sent_at__isnull=True, claimed_at__gte=start)).count()


def send_claimed(send_id: int, session: SendSession, *, now: dt.datetime | None = None) -> str:
    """Handle one send this worker claimed; returns what happened (sent, skipped, retry, unknown, failed, lost)."""
    now = now or timezone.now()
    send = MessageSend.objects.select_related("account", "rule", "step", "template", "lead").filter(pk=send_id).first()
    if send is None or send.status != Status.SENDING or send.claimed_at is None:
        return "lost"
    claim = send.claimed_at
    opportunities = list(Opportunity.objects.filter(lead_id=send.lead_id).order_by("-created_at", "-id")[:50])
    reason = skip_reason(send, now, opportunities)
    if reason:
        advance(send.pk, Status.SKIPPED, skip_reason=reason, at=now)
        return "skipped"
    zone = account_zone(send.account)
    rule = send.rule
    if in_quiet_hours(now, rule.quiet_hours_start, rule.quiet_hours_end, zone):
        retry_at = out_of_quiet_hours(now, rule.quiet_hours_start, rule.quiet_hours_end, zone)
        claiming.release(send.pk, claim, retry_at=retry_at, count_attempt=False)
        return "retry"
    channel = session.channel(send.account_id)
    if channel is None:
        advance(send.pk, Status.SKIPPED, skip_reason=Skip.NO_CHANNEL, at=now)
        return "skipped"
    client = session.client(send.account_id)
    if client is None:
        return _retry_or_fail(send, claim, now + NOT_CONNECTED_RETRY, "Meta is not connected (or needs reconnecting)")
    recipient = "".join(ch for ch in send.lead.phone if ch.isdigit())
    opportunity = opportunities[0] if opportunities else None
    values = values_for(send.step.variables if send.step else {}, SendContext(send.account, send.lead, opportunity))
    components = graph_components(send.template.components, send.template.parameter_format, values)
    body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": recipient, "type": "template",
            "template": {"name": send.template.name, "language": {"code": send.template.language}, "components": components},
            "biz_opaque_callback_data": str(send.pk)}
    try:
        decision = limiter.acquire(channel.meta_phone_number_id, channel.throughput_mps, recipient)
    except limiter.LimiterUnavailable as exc:  # a Redis restart: back to the queue, sent once it answers again
        log.warning("send %s waits: %s", send.pk, exc)
        claiming.release(send.pk, claim, retry_at=now + LIMITER_DOWN_RETRY, count_attempt=False, error_details=str(exc))
        return "retry"
    if decision.allowed and not decision.still_valid():
        limiter.forget_pair(channel.meta_phone_number_id, recipient)
        decision = limiter.Decision(False, float(decision.second + 1), "late")
    if not decision.allowed:
        retry_at = decision.retry_at
        log.debug("send %s waits for the limiter (%s) until %.3f", send.pk, decision.reason, retry_at)
        claiming.release(send.pk, claim, retry_at=dt.datetime.fromtimestamp(retry_at + random.random() * 0.2, tz=dt.timezone.utc),
                         count_attempt=False)
        return "retry"
    # From here on the request may reach Meta: a worker that dies now leaves the row unknown (never
    # re-sent); one that died before this line left it sending, which is safe to queue again.
    if not MessageSend.objects.filter(pk=send.pk, status=Status.SENDING, claimed_at=claim).update(
            status=Status.UNKNOWN, channel=channel, parameters=components, updated_at=timezone.now()):
        return "lost"
    try:
        answer = client.post(f"{channel.meta_phone_number_id}/messages", body)
    except GraphError as error:
        return _after_error(send, claim, error, now)
    messages = answer.get("messages") if isinstance(answer, dict) else None
    wamid = str(messages[0].get("id") or "") if messages and isinstance(messages[0], dict) else ""
    advance(send.pk, Status.SENT, wamid=wamid, at=timezone.now(), expected=Status.UNKNOWN,
            template_id=send.template_id, rule_id=send.rule_id)
    return "sent"


def _after_error(send: MessageSend, claim: dt.datetime, error: GraphError, now: dt.datetime) -> str:
    if error.network:
        if not error.sent:  # the connection never opened: Meta cannot have seen it
            return _retry_or_fail(send, claim, now + _backoff(send.attempts), "network error before the request left")
        return _unknown(send, claim, "no answer from Meta (timeout or dropped connection)")
    if error.garbled and (error.http_status or 0) < 300:  # a success whose body was cut off: Meta took it
        return _unknown(send, claim, f"Meta's answer could not be read (HTTP {error.http_status})")
    code = error.code
    if error.is_token_invalid:
        note_graph_error(send.account, error)
        return _retry_or_fail(send, claim, now + NOT_CONNECTED_RETRY, f"Meta rejected the token (code {code})")
    if code == OPT_OUT_CODE:
        set_opt_out(send.lead_id, opted_out=True, at=now)
        return _fail(send, error)
    if code in TEMPLATE_CODES:
        AutomationRule.objects.filter(pk=send.rule_id).update(
            flagged_reason=f"Meta refused template {send.template_name} (code {code}): {error.message}"[:255])
        return _fail(send, error)
    if code in RETRY_CODES or error.is_rate_limited or (error.http_status or 0) >= 500 or error.transient_flag:
        wait = _backoff(send.attempts)
        if code == PAIR_RATE_CODE:
            wait = max(wait, dt.timedelta(seconds=limiter.PAIR_SECONDS))
        elif code == 131049:  # Meta's per-user marketing limit: not before tomorrow
            wait = dt.timedelta(hours=24)
        if error.retry_after:
            wait = max(wait, dt.timedelta(seconds=error.retry_after))
        return _retry_or_fail(send, claim, now + wait, str(error))
    return _fail(send, error)


def _unknown(send: MessageSend, claim: dt.datetime, why: str) -> str:
    """The POST may have reached Meta: the row stays unknown for a status webhook or reconciliation."""
    MessageSend.objects.filter(pk=send.pk, status=Status.UNKNOWN, claimed_at=claim).update(
        error_title=why, updated_at=timezone.now())
    return "unknown"


def _backoff(attempts: int) -> dt.timedelta:
    """5 s, 10 s, 20 s ... 30 min (plus jitter): after an error from Meta, not within the pass that met it."""
    return dt.timedelta(seconds=min(5 * 2 ** attempts, 1800) + random.random())


def _retry_or_fail(send: MessageSend, claim: dt.datetime, retry_at: dt.datetime, why: str) -> str:
    if send.attempts + 1 >= MAX_ATTEMPTS:
        advance(send.pk, Status.FAILED, error_title=f"gave up after {MAX_ATTEMPTS} attempts", error_details=why)
        return "failed"
    claiming.release(send.pk, claim, retry_at=retry_at, error_details=why[:2000])
    return "retry"


def _fail(send: MessageSend, error: GraphError) -> str:
    advance(send.pk, Status.FAILED, error_code=error.code, error_title=error.message[:255], error_details=str(error)[:2000])
    return "failed"
