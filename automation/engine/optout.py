"""The one place a lead's WhatsApp opt-out is set or cleared (user_preferences webhook, error 131050,
admin), and the end of pending sends that opt-outs, replies and won opportunities cause (at once,
not only when the send pass re-checks them)."""
from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from automation.models import AutomationRule, MessageSend
from crm_marketing.models import Lead

Skip = MessageSend.SkipReason


@transaction.atomic
def set_opt_out(lead: Lead | int, *, opted_out: bool, at: dt.datetime | None = None) -> bool:
    """Stop (``opted_out=True``) or resume marketing messages to the lead; True when it changed.

    A stop also ends the lead's queued sends as ``skipped``/``opted_out``."""
    lead_id = lead if isinstance(lead, int) else lead.pk
    at = at or timezone.now()
    rows = Lead.objects.filter(pk=lead_id)
    if opted_out:
        changed = rows.filter(opted_out_at__isnull=True).update(opted_out_at=at, updated_at=timezone.now())
        _end_queued(MessageSend.objects.filter(lead_id=lead_id), Skip.OPTED_OUT)
    else:
        changed = rows.filter(opted_out_at__isnull=False).update(opted_out_at=None, updated_at=timezone.now())
    return bool(changed)


def end_follow_ups_after_reply(lead_id: int, *, replied_at: dt.datetime) -> int:
    """A reply ends the lead's queued sends of rules with ``exit_on_reply`` planned before it."""
    return _end_queued(MessageSend.objects.filter(Q(rule__exit_on_reply=True), lead_id=lead_id, created_at__lte=replied_at),
                       Skip.LEAD_REPLIED)


def end_follow_ups_after_win(lead_id: int) -> int:
    """A won opportunity ends the lead's queued sends of rules with ``exit_on_won``, as the send pass's
    re-check would (the rules the win itself triggers keep theirs)."""
    return _end_queued(MessageSend.objects.filter(rule__exit_on_won=True, lead_id=lead_id)
                       .exclude(rule__trigger_type=AutomationRule.Trigger.OPPORTUNITY_WON), Skip.OPPORTUNITY_WON)


def _end_queued(sends, reason: str) -> int:
    """Queued sends only: one a pass holds (``sending``) is re-checked there before its request leaves."""
    return sends.filter(status=MessageSend.Status.QUEUED).update(
        status=MessageSend.Status.SKIPPED, skip_reason=reason, updated_at=timezone.now())
