"""django-q2 entry points: take ids, reload rows, call a service, return a short result string."""
from __future__ import annotations

from django.conf import settings

from crm_marketing.models import Account
from crm_marketing.queueing import gather
from marketing.models import SyncRun
from marketing.services import rollup_marks, rollups
from marketing.services.leads_backfill import backfill_connected_accounts
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


def rebuild_roi_rollups(account_id: int) -> str:
    """Re-derive one account's whole ROI rollup (after a timezone change or a removed ad account)."""
    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        return f"account {account_id}: gone"
    result = rollups.rebuild(account)
    return f"{account.slug}: {result.days} days re-derived, {result.rows_written} rollup rows written"


def fold_roi_rollup(account_id: int) -> str:
    """Queued once a write that marked rollup cells commits: fold the account's marks (after a burst's gathered)."""
    gather(settings.ROLLUP_FOLD_GATHER_SECONDS)  # a fold costs about the same for one mark as for a hundred
    return rollup_marks.fold_account(account_id).summary(account_id)


def fold_all_roi_rollups() -> str:
    """Every minute: fold the marks no queued fold took (the task was lost, the broker was down)."""
    results = rollup_marks.fold_all()
    return (f"{len(results)} account(s) folded: {sum(r.marks for r in results.values())} mark(s), "
            f"{sum(r.rows_written for r in results.values())} rollup row(s) written")


def _with_failures(summary: str, outcome: rollups.RebuildOutcome) -> str:
    return f"{summary}; {outcome.failure_line()}" if outcome.failures else summary


def rebuild_all_roi_rollups() -> str:
    """Once after the rollup's migration: every account's whole history."""
    outcome = rollups.rebuild_accounts(Account.objects.order_by("pk"))
    results = outcome.results
    return _with_failures(f"ROI rollup of {len(results)} account(s) built: {sum(r.rows_written for r in results)} rows written",
                          outcome)


def rebuild_recent_roi_rollups() -> str:
    """Nightly: every account's last 35 days, the safety net under the incremental refreshes."""
    outcome = rollups.rebuild_recent()
    results = outcome.results
    return _with_failures(
        f"ROI rollup, last 35 days of {len(results)} account(s): {sum(r.rows_written for r in results)} rows written, "
        f"{sum(r.sales_reattributed for r in results)} sale(s) re-attributed", outcome)


def backfill_recent_leads() -> str:
    """Nightly: record the last week's Lead Ads leads of every connected account that no webhook brought."""
    outcome = backfill_connected_accounts()
    return "; ".join(f"{slug}: {text}" for slug, text in outcome.items()) or "no connected account"
