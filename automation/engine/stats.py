"""The engine's read figures: the send log filters and GET automation/stats."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from automation.engine.claiming import due_filter
from automation.engine.models import EnginePass
from automation.engine.planning import account_zone
from automation.models import MessageSend
from crm_marketing.models import Account, Lead
from marketing.time_ranges import Window

Status = MessageSend.Status
WENT_OUT = (Status.UNKNOWN, Status.SENT, Status.DELIVERED, Status.READ, Status.FAILED)
OVERDUE_AFTER = dt.timedelta(minutes=5)
RECENT_PASS = dt.timedelta(minutes=3)


@dataclass(frozen=True)
class AutomationStats:
    sends: int
    delivered: int
    read: int
    failed: int
    delivery_rate: float | None
    read_rate: float | None
    leads_followed_up: float | None
    leads_uncontacted_24h: int
    engine: str


def _pct(part: int, whole: int) -> float | None:
    return round(part * 100.0 / whole, 1) if whole else None


def engine_state(account: Account, *, now: dt.datetime | None = None) -> str:
    """error: a due send waits past OVERDUE_AFTER or the last pass failed; operational: a pass ran
    in the last few minutes; idle otherwise."""
    now = now or timezone.now()
    if MessageSend.objects.filter(due_filter(now - OVERDUE_AFTER), account=account).exists():
        return "error"
    last = EnginePass.objects.filter(finished_at__isnull=False).order_by("-finished_at").first()
    if last is not None and not last.ok:
        return "error"
    if EnginePass.objects.filter(started_at__gte=now - RECENT_PASS).exists():
        return "operational"
    return "idle"


def automation_stats(account: Account, window: Window, *, now: dt.datetime | None = None) -> AutomationStats:
    now = now or timezone.now()
    start, end = window.bounds(account_zone(account))
    sends = MessageSend.objects.filter(account=account, created_at__gte=start, created_at__lt=end, status__in=WENT_OUT)
    counts = sends.aggregate(
        total=Count("id"), failed=Count("id", filter=Q(status=Status.FAILED)),
        delivered=Count("id", filter=Q(status__in=(Status.DELIVERED, Status.READ))),
        read=Count("id", filter=Q(status=Status.READ)))
    reached = MessageSend.objects.filter(lead=OuterRef("pk"), status__in=(Status.SENT, Status.DELIVERED, Status.READ))
    any_send = MessageSend.objects.filter(lead=OuterRef("pk")).exclude(status=Status.SKIPPED)
    new_leads = Lead.objects.filter(account=account, created_at__gte=start, created_at__lt=end)
    followed = new_leads.aggregate(total=Count("id"), followed=Count("id", filter=Q(Exists(reached))))
    uncontacted = new_leads.filter(created_at__lte=now - dt.timedelta(hours=24), status=Lead.Status.NEW,
                                   status_changed_at__isnull=True).exclude(Exists(any_send)).count()
    return AutomationStats(
        sends=counts["total"], delivered=counts["delivered"], read=counts["read"], failed=counts["failed"],
        delivery_rate=_pct(counts["delivered"], counts["total"]), read_rate=_pct(counts["read"], counts["delivered"]),
        leads_followed_up=_pct(followed["followed"], followed["total"]), leads_uncontacted_24h=uncontacted,
        engine=engine_state(account, now=now))
