"""Marketing's readiness figures for /readyz (registered from MarketingConfig.ready())."""
from __future__ import annotations

from typing import Any

from django.db.models import Min

from crm_marketing.health import age_seconds
from marketing.models import SyncRun
from marketing.services.runs import due_ad_accounts


def sync_backlog() -> dict[str, Any]:
    """Syncs waiting or running, the oldest one's age (a queued run that ages means the workers are
    behind, a running one that ages may be stuck), and ad accounts due that no run has taken yet."""
    active = SyncRun.objects.filter(status__in=[SyncRun.Status.QUEUED, SyncRun.Status.RUNNING])
    figures = active.aggregate(oldest=Min("created_at"))
    return {
        "active": active.count(),
        "oldest_active_age_seconds": age_seconds(figures["oldest"]),
        "due_ad_accounts": due_ad_accounts().count(),
    }
