"""SyncRun bookkeeping: opening a run (one active per ad account), queueing it, finding due ad accounts.

The partial unique constraint `syncrun_one_active_per_ad_account` is what makes a second request a
409. A running run holds a lease: its worker writes `heartbeat_at` as the sync progresses, and a run
whose heartbeat is older than META_SYNC_LEASE_SECONDS (about a minute) lost its worker (SIGKILL, a
host gone). Then a new request closes it as failed and opens its own, and the re-delivered django-q2
task takes the same row over (`take_over_stale_run`). `lease_owner` fences a worker that was only
slow: its next heartbeat finds another owner and it stops (`LeaseLost`) instead of writing on.
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
from crm_marketing.queueing import enqueue_after_commit
from crm_marketing.tenancy import Account
from marketing.models import AdAccount, SyncRun
from meta_oauth.models import MetaConnection
from meta_oauth.services import connection_for

ACTIVE = [SyncRun.Status.QUEUED, SyncRun.Status.RUNNING]
# A queued run waits for a free worker, which may take a while on a busy queue; this long, it was lost.
QUEUED_STALE_AFTER = dt.timedelta(minutes=30)
# A queued run not started this long may have lost its task: the scheduled tick queues it again.
REQUEUE_AFTER = dt.timedelta(minutes=5)
RUN_SYNC_TASK = "marketing.tasks.run_sync"


class LeaseLost(Exception):
    """Another worker took this run over (our heartbeat went stale): stop without writing further."""


def lease_duration() -> dt.timedelta:
    return dt.timedelta(seconds=float(getattr(settings, "META_SYNC_LEASE_SECONDS", 60)))


def _stale_running(now: dt.datetime) -> Q:
    """Running, and the last sign of life (heartbeat, else start, else last write) older than the lease."""
    cutoff = now - lease_duration()
    return Q(status=SyncRun.Status.RUNNING) & (
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__isnull=True, updated_at__lt=cutoff))


def selected_ad_account(account: Account) -> AdAccount | None:
    return AdAccount.objects.filter(account=account, is_selected=True).first()


def close_stale_runs(ad_account: AdAccount, *, now: dt.datetime | None = None) -> int:
    """Close as failed the ad account's running run whose lease expired and a queued run never picked up."""
    now = now or timezone.now()
    runs = SyncRun.objects.filter(ad_account=ad_account)
    lease = int(lease_duration().total_seconds())
    stale_running = runs.filter(_stale_running(now)).update(
        status=SyncRun.Status.FAILED, finished_at=now, lease_owner="",
        error=f"Abandoned: no heartbeat for {lease} s (worker stopped?)")
    stale_queued = runs.filter(status=SyncRun.Status.QUEUED, created_at__lt=now - QUEUED_STALE_AFTER).update(
        status=SyncRun.Status.FAILED, finished_at=now,
        error=f"Abandoned: queued for {int(QUEUED_STALE_AFTER.total_seconds() // 60)} minutes and never started "
              "(worker stopped?)")
    return stale_running + stale_queued


def open_run(ad_account: AdAccount, kind: str, *, status: str = SyncRun.Status.QUEUED, task_id: str = "") -> SyncRun:
    """A new queued or running SyncRun; Conflict (409) when the ad account already has an active one."""
    close_stale_runs(ad_account)
    now = timezone.now()
    running = status == SyncRun.Status.RUNNING
    try:
        with transaction.atomic():
            return SyncRun.objects.create(
                account_id=ad_account.account_id, ad_account=ad_account, kind=kind, status=status, task_id=task_id,
                started_at=now if running else None, heartbeat_at=now if running else None,
                lease_owner=uuid.uuid4().hex if running else "")
    except IntegrityError:
        raise Conflict("A sync of this ad account is already queued or running.", code="sync_in_progress") from None


def claim_run(run: SyncRun) -> bool:
    """queued -> running with one conditional update, so two workers never run the same row."""
    now, owner = timezone.now(), uuid.uuid4().hex
    claimed = SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.QUEUED).update(
        status=SyncRun.Status.RUNNING, started_at=now, heartbeat_at=now, lease_owner=owner, updated_at=now)
    if claimed:
        run.status, run.started_at, run.heartbeat_at, run.lease_owner = SyncRun.Status.RUNNING, now, now, owner
    return bool(claimed)


def take_over_stale_run(run: SyncRun) -> bool:
    """A re-delivered task finds its run still running with an expired lease (the worker that had it was
    killed): take the lease with one conditional update and run it again (syncs are idempotent upserts)."""
    now, owner = timezone.now(), uuid.uuid4().hex
    taken = SyncRun.objects.filter(pk=run.pk).filter(_stale_running(now)).update(
        heartbeat_at=now, lease_owner=owner, updated_at=now)
    if taken:
        run.status, run.heartbeat_at, run.lease_owner = SyncRun.Status.RUNNING, now, owner
    return bool(taken)


def beat(run: SyncRun, **progress) -> None:
    """Renew the run's lease (and record progress); LeaseLost when another worker has taken it over."""
    renewed = SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.RUNNING, lease_owner=run.lease_owner).update(
        heartbeat_at=timezone.now(), updated_at=timezone.now(), **progress)
    if not renewed:
        raise LeaseLost(f"sync run {run.pk} was taken over or closed by another worker")


def queue_run(run: SyncRun) -> None:
    """Hand the run to django-q2 once the transaction that created it commits. A broker that is down (a
    Redis restart) does not fail the request: the run stays queued and ``requeue_unstarted_runs`` sends it."""
    enqueue_after_commit(RUN_SYNC_TASK, run.pk, task_name=run.task_id)


def requeue_unstarted_runs(*, now: dt.datetime | None = None) -> int:
    """Queue again the task of runs still queued after REQUEUE_AFTER: a Redis restart empties the broker's
    queue, or the broker was down when the run was created. A run whose first task does arrive is taken by
    one of the two (``claim_run``); the other finds it taken and does nothing."""
    now = now or timezone.now()
    runs = list(SyncRun.objects.filter(status=SyncRun.Status.QUEUED, created_at__lte=now - REQUEUE_AFTER,
                                       created_at__gte=now - QUEUED_STALE_AFTER))
    for run in runs:
        queue_run(run)
    return len(runs)


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


# After a failed run, the next try comes sooner than the interval: 5, 15, then 45 minutes after each failure
# in a row (rounded up to the 15-minute schedule); from the fourth failure in a row, the normal interval.
FAILED_RETRY_BACKOFF = (dt.timedelta(minutes=5), dt.timedelta(minutes=15), dt.timedelta(minutes=45))


def next_sync_due_at(ad_account: AdAccount, *, interval: dt.timedelta) -> dt.datetime | None:
    """When the ad account is next due (None: now, it never synced). Parked: when the parking ends. After
    failed runs in a row: FAILED_RETRY_BACKOFF after the last. Otherwise the interval after the last run."""
    if ad_account.parked_until:
        return ad_account.parked_until
    latest = list(SyncRun.objects.filter(ad_account=ad_account).order_by("-created_at", "-id")
                  .values_list("status", "created_at", "finished_at")[:len(FAILED_RETRY_BACKOFF) + 1])
    if not latest:
        return None
    status, created_at, finished_at = latest[0]
    failures = next((n for n, run in enumerate(latest) if run[0] != SyncRun.Status.FAILED), len(latest))
    if status == SyncRun.Status.FAILED and failures <= len(FAILED_RETRY_BACKOFF):
        return (finished_at or created_at) + FAILED_RETRY_BACKOFF[failures - 1]
    return created_at + interval


def due_ad_accounts(*, now: dt.datetime | None = None) -> list[AdAccount]:
    """Selected ad accounts of connected accounts whose next sync is due (see next_sync_due_at)."""
    now = now or timezone.now()
    interval = dt.timedelta(hours=getattr(settings, "META_SYNC_INTERVAL_HOURS", 4))
    due = []
    for ad_account in connected_ad_accounts():
        due_at = next_sync_due_at(ad_account, interval=interval)
        if due_at is None or due_at <= now:
            due.append(ad_account)
    return due


def queue_due_syncs(*, now: dt.datetime | None = None) -> list[SyncRun]:
    """The scheduled entry: one queued full sync per due ad account (skipping ones already active), after
    queueing again the runs whose task was lost."""
    requeue_unstarted_runs(now=now)
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
