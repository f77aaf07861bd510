"""django-q2 entry points: take ids, reload rows, call a service, return a short result string."""
from __future__ import annotations

from marketing.models import SyncRun
from marketing.services.runs import queue_due_syncs
from marketing.services.sync import perform_queued_run


def run_sync(sync_run_id: int) -> str:
    """Run one queued SyncRun (queued by POST /crm/marketing/sync or by the schedule)."""
    run = SyncRun.objects.select_related("ad_account", "account").filter(pk=sync_run_id).first()
    if run is None:
        return f"sync run {sync_run_id}: gone"
    result = perform_queued_run(run)
    return result.summary() if result is not None else f"sync run {sync_run_id}: already taken ({run.status})"


def sync_due_ad_accounts() -> str:
    """Scheduled every few minutes: queue a sync for each ad account due (META_SYNC_INTERVAL_HOURS)."""
    runs = queue_due_syncs()
    return f"queued {len(runs)} ad account syncs"
