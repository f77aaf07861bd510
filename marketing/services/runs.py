"""SyncRun bookkeeping: opening a run (one active per ad account), queueing it, finding due ad accounts.

The partial unique constraint `syncrun_one_active_per_ad_account` is what makes a second request a
409; a run that stopped reporting progress (its worker died) is closed as failed before a new one opens.
"""
from __future__ import annotations

import datetime as dt
import uuid

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from crm_marketing.audit import record_event
from crm_marketing.errors import Conflict, NotConnected
from crm_marketing.tenancy import Account
from marketing.models import AdAccount, SyncRun
from meta_oauth.models import MetaConnection
from meta_oauth.services import connection_for

ACTIVE = [SyncRun.Status.QUEUED, SyncRun.Status.RUNNING]
# No heartbeat for this long: the run's worker is gone (django-q2 kills tasks after Q_CLUSTER timeout).
STALE_AFTER = dt.timedelta(minutes=30)
RUN_SYNC_TASK = "marketing.tasks.run_sync"


def selected_ad_account(account: Account) -> AdAccount | None:
    return AdAccount.objects.filter(account=account, is_selected=True).first()


def close_stale_runs(ad_account: AdAccount, *, now: dt.datetime | None = None) -> int:
    now = now or timezone.now()
    return SyncRun.objects.filter(ad_account=ad_account, status__in=ACTIVE, updated_at__lt=now - STALE_AFTER).update(
        status=SyncRun.Status.FAILED, finished_at=now,
        error=f"Abandoned: no progress for {int(STALE_AFTER.total_seconds() // 60)} minutes (worker stopped?)")


def open_run(ad_account: AdAccount, kind: str, *, status: str = SyncRun.Status.QUEUED, task_id: str = "") -> SyncRun:
    """A new queued or running SyncRun; Conflict (409) when the ad account already has an active one."""
    close_stale_runs(ad_account)
    now = timezone.now()
    try:
        with transaction.atomic():
            return SyncRun.objects.create(
                account_id=ad_account.account_id, ad_account=ad_account, kind=kind, status=status, task_id=task_id,
                started_at=now if status == SyncRun.Status.RUNNING else None)
    except IntegrityError:
        raise Conflict("A sync of this ad account is already queued or running.", code="sync_in_progress") from None


def claim_run(run: SyncRun) -> bool:
    """queued -> running with one conditional update, so two workers never run the same row."""
    now = timezone.now()
    claimed = SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.QUEUED).update(
        status=SyncRun.Status.RUNNING, started_at=now, updated_at=now)
    if claimed:
        run.status, run.started_at = SyncRun.Status.RUNNING, now
    return bool(claimed)


def queue_run(run: SyncRun) -> None:
    """Hand the run to django-q2 once the transaction that created it commits."""
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task(RUN_SYNC_TASK, run.pk, task_name=run.task_id))


def request_sync(account: Account, *, actor=None, request=None) -> SyncRun:
    """The hub's "sync now": queue a full sync of the selected ad account (503 / 409 when it cannot)."""
    connection = connection_for(account)
    if connection is None or not connection.is_usable:
        raise NotConnected("Meta is not connected for this account (or needs to be reconnected).")
    ad_account = selected_ad_account(account)
    if ad_account is None:
        raise NotConnected("No ad account is selected: connect one first.", code="ad_account_not_selected")
    if ad_account.parked_until and ad_account.parked_until > timezone.now():
        raise Conflict(f"Meta throttled this ad account; syncing resumes after {ad_account.parked_until.isoformat()}.",
                       code="sync_parked")
    with transaction.atomic():
        run = open_run(ad_account, SyncRun.Kind.FULL, task_id=uuid.uuid4().hex)
        record_event("meta.ad_account.sync", account=account, actor=actor, target=run, request=request,
                     ad_account=ad_account.meta_ad_account_id, task_id=run.task_id)
        queue_run(run)
    return run


def connected_ad_accounts(account: Account | None = None):
    """The selected ad account of every account with a usable Meta connection (or of one account)."""
    connected = MetaConnection.objects.filter(account=OuterRef("account"), status=MetaConnection.Status.CONNECTED)
    queryset = AdAccount.objects.filter(is_selected=True).filter(Exists(connected)).select_related("account")
    if account is not None:
        queryset = queryset.filter(account=account)
    return queryset.order_by("pk")


def due_ad_accounts(*, now: dt.datetime | None = None):
    """Selected ad accounts of connected accounts that are not parked, with no run in the last interval
    (a parked account is due again as soon as its parking ends)."""
    now = now or timezone.now()
    interval = dt.timedelta(hours=getattr(settings, "META_SYNC_INTERVAL_HOURS", 4))
    recent = SyncRun.objects.filter(ad_account=OuterRef("pk"), created_at__gt=now - interval)
    return connected_ad_accounts().filter((Q(parked_until__isnull=True) & ~Exists(recent)) | Q(parked_until__lte=now))


def queue_due_syncs(*, now: dt.datetime | None = None) -> list[SyncRun]:
    """The scheduled entry: one queued full sync per due ad account (skipping ones already active)."""
    runs = []
    for ad_account in due_ad_accounts(now=now):
        try:
            with transaction.atomic():
                run = open_run(ad_account, SyncRun.Kind.FULL, task_id=uuid.uuid4().hex)
                queue_run(run)
        except Conflict:
            continue
        runs.append(run)
    return runs
