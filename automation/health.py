"""Automation's readiness figures for /readyz (registered from AutomationConfig.ready())."""
from __future__ import annotations

from typing import Any

from django.db.models import Count, Min, Q
from django.utils import timezone

from automation.models import MessageSend
from crm_marketing.health import age_seconds


def due_sends() -> dict[str, Any]:
    """Sends whose time has come and that no worker has taken (the (status, due_at) index): an
    oldest age past a minute or two means the send passes are not keeping up."""
    now = timezone.now()
    figures = (MessageSend.objects.filter(status=MessageSend.Status.QUEUED, due_at__lte=now)
               .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
               .aggregate(due=Count("id"), oldest=Min("due_at")))
    return {"due": figures["due"], "oldest_due_age_seconds": age_seconds(figures["oldest"])}
