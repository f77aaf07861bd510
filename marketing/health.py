"""Marketing's readiness figures for /readyz (registered from MarketingConfig.ready()).

Cheap on purpose (a probe polls it every few seconds): one aggregate query each, no walk over the
accounts.
"""
from __future__ import annotations

from typing import Any

from django.db.models import Count, Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from crm_marketing.health import age_seconds
from marketing.models import RollupDirtyCell, SyncRun
from marketing.services.runs import lease_duration


def sync_backlog() -> dict[str, Any]:
    """Syncs queued or running and the oldest one's age (a queued run that ages means the workers
    are behind), and running syncs whose lease ran out (their worker died; the next request or the
    re-delivered task takes them over, so a count that stays up means nothing is coming back)."""
    cutoff = timezone.now() - lease_duration()
    figures = (SyncRun.objects.filter(status__in=[SyncRun.Status.QUEUED, SyncRun.Status.RUNNING])
               .annotate(last_sign_of_life=Coalesce("heartbeat_at", "started_at", "updated_at"))
               .aggregate(active=Count("id"), oldest=Min("created_at"),
                          stale=Count("id", filter=Q(status=SyncRun.Status.RUNNING, last_sign_of_life__lt=cutoff))))
    return {"active": figures["active"], "oldest_active_age_seconds": age_seconds(figures["oldest"]),
            "stale_running": figures["stale"]}


def rollup_backlog() -> dict[str, Any]:
    """ROI rollup cells that writes marked and no fold has re-derived yet, and the oldest mark's age. The
    figures stay exact meanwhile (the reads recompute marked cells), but each read pays for it: marks
    older than a minute mean the folds are behind (no worker, or every worker busy)."""
    figures = RollupDirtyCell.objects.aggregate(marks=Count("id"), oldest=Min("marked_at"))
    return {"marks": figures["marks"], "oldest_mark_age_seconds": age_seconds(figures["oldest"])}
