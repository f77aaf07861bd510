"""The one place a lead's WhatsApp opt-out is set or cleared (user_preferences webhook, error 131050,
admin), and the end of pending sends that opt-outs and replies cause."""
from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from automation.models import MessageSend
from crm_marketing.models import Lead


@transaction.atomic
def set_opt_out(lead: Lead | int, *, opted_out: bool, at: dt.datetime | None = None) -> bool:
    """Stop (``opted_out=True``) or resume marketing messages to the lead; True when it changed.

    A stop also ends the lead's queued sends as ``skipped``/``opted_out``."""
    lead_id = lead if isinstance(lead, int) else lead.pk
    at = at or timezone.now()
    rows = Lead.objects.filter(pk=lead_id)
    if opted_out:
        changed = rows.filter(opted_out_at__isnull=True).update(opted_out_at=at, updated_at=timezone.now())
        MessageSend.objects.filter(lead_id=lead_id, status=MessageSend.Status.QUEUED).update(
            status=MessageSend.Status.SKIPPED, skip_reason=MessageSend.SkipReason.OPTED_OUT, updated_at=timezone.now())
    else:
        changed = rows.filter(opted_out_at__isnull=False).update(opted_out_at=None, updated_at=timezone.now())
    return bool(changed)


def end_follow_ups_after_reply(lead_id: int, *, replied_at: dt.datetime) -> int:
    """A reply ends the lead's queued sends of rules with ``exit_on_reply`` planned before it."""
    return MessageSend.objects.filter(
        Q(rule__exit_on_reply=True), lead_id=lead_id, status=MessageSend.Status.QUEUED, created_at__lte=replied_at,
    ).update(status=MessageSend.Status.SKIPPED, skip_reason=MessageSend.SkipReason.LEAD_REPLIED, updated_at=timezone.now())
