"""One sync of an ad account: entities, the 28-day restatement window, then the history backfill.

Outcomes land in a SyncRun row: succeeded; parked (Meta throttled us: the ad account's
`parked_until` is set and later runs skip it until then); failed (190 also marks the connection
`needs_reconnect`). Backfill walks back up to 37 months in 90-day slices, newest first, and records
how far it got in `AdAccount.backfilled_since`, so a parked or time-boxed run resumes where it stopped.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Callable

from django.utils import timezone

from crm_marketing.errors import NotConnected
from crm_marketing.graph import GraphClient, GraphError
from marketing.models import AdAccount, SyncRun
from marketing.services.entities import EntityCounts, sync_entities
from marketing.services.insights import (InsightsFailed, InsightsReader, ad_account_today,
                                         restatement_window)
from marketing.services.metered import MeteredGraph, Throttled, default_park_seconds
from marketing.services.runs import LeaseLost, beat, claim_run, lease_duration, open_run, take_over_stale_run
from marketing.time_ranges import Window
from meta_oauth.services import client_for_account, note_graph_error

BACKFILL_MONTHS = 37  # how far back Meta keeps insights
SLICE_DAYS = 90
# A queued run stops backfilling after this long (django-q2 kills tasks at Q_CLUSTER["timeout"]);
# the next run carries on from backfilled_since.
TASK_BACKFILL_SECONDS = 300.0
Progress = Callable[[str, int, int], None]  # (label, done, total)


@dataclass
class SyncResult:
    ad_account: str
    status: str  # a SyncRun.Status value, or "skipped" (parked, nothing done)
    run_id: int | None = None
    rows: int = 0
    entities: int = 0
    graph_calls: int = 0
    since: dt.date | None = None
    until: dt.date | None = None
    error: str = ""
    parked_until: dt.datetime | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == SyncRun.Status.SUCCEEDED

    def summary(self) -> str:
        text = (f"{self.ad_account} {self.status}: {self.rows} insight rows, {self.entities} campaigns/ad sets/ads, "
                f"{self.graph_calls} Graph calls in {self.seconds:.1f} s")
        if self.parked_until:
            text += f"; parked until {self.parked_until.isoformat(timespec='seconds')}"
        if self.error and not self.parked_until:
            text += f"; {self.error}"
        return text


def backfill_floor(today: dt.date) -> dt.date:
    """The oldest day Meta still answers for: today minus 37 months (plus a day of margin)."""
    month_index = today.year * 12 + today.month - 1 - BACKFILL_MONTHS
    year, month = divmod(month_index, 12)
    day = min(today.day, 28)
    return dt.date(year, month + 1, day) + dt.timedelta(days=1)


class _Sync:
    """The state of one run: the graph wrapper, the insights reader and the SyncRun to report to."""

    def __init__(self, ad_account: AdAccount, run: SyncRun, graph: MeteredGraph, reader: InsightsReader,
                 progress: Progress | None, now: dt.datetime) -> None:
        self.ad_account, self.run, self.graph, self.reader = ad_account, run, graph, reader
        self.progress = progress or (lambda label, done, total: None)
        self.now = now
        self.today = ad_account_today(ad_account, now)
        self.entities = EntityCounts()
        # Renew the lease at most this often on every Graph response, so a long run never looks dead.
        self.pulse_every = min(5.0, lease_duration().total_seconds() / 4)
        self.last_beat = time.monotonic()

    def heartbeat(self) -> None:
        """Renew the run's lease with the progress so far (LeaseLost when another worker took it over)."""
        beat(self.run, rows=self.reader.progress.rows, graph_calls=self.graph.calls,
             since=self.run.since, until=self.run.until)
        self.last_beat = time.monotonic()

    def pulse(self) -> None:
        """Called on every Graph response: a heartbeat if the last one is a while ago."""
        if time.monotonic() - self.last_beat >= self.pulse_every:
            self.heartbeat()

    def _cover(self, window: Window) -> None:
        self.run.since = min(filter(None, [self.run.since, window.since]))
        self.run.until = max(filter(None, [self.run.until, window.until]))

    def _set(self, **fields) -> None:
        AdAccount.objects.filter(pk=self.ad_account.pk).update(**fields)
        for name, value in fields.items():
            setattr(self.ad_account, name, value)

    def sync_windows(self, windows: list[Window], label: str) -> None:
        """Newest first; before each older slice, one cheap call checks that anything is left down there."""
        oldest = windows[-1].since if windows else None
        for number, window in enumerate(windows, 1):
            if number > 1 and not self.reader.has_data(Window(oldest, window.until)):
                self.progress(label, len(windows), len(windows))
                return
            self._cover(window)
            self.reader.sync_window(window)
            self.heartbeat()
            self.progress(label, number, len(windows))

    def recent(self) -> Window:
        """[today-28d, today], reaching back to the last sync's day if it is older (no gap in between)."""
        window = restatement_window(self.today)
        if self.ad_account.last_synced_at and self.ad_account.backfilled_since:
            last_day = ad_account_today(self.ad_account, self.ad_account.last_synced_at)
            window = Window(min(window.since, last_day), window.until)
        return window

    def joins_synced_days(self, window: Window) -> bool:
        """True when ``window`` reaches today and back to the last sync's day (or nothing was synced yet):
        then the data is complete from ``backfilled_since`` (or ``window.since``) to today. A shorter
        refresh after a pause must not move ``last_synced_at``, or the next sync would skip the days between."""
        if window.until != self.today:
            return False
        last_synced_at = self.ad_account.last_synced_at
        return last_synced_at is None or window.since <= ad_account_today(self.ad_account, last_synced_at)

    def insights(self, since: dt.date | None, until: dt.date | None, *, backfill_seconds: float | None) -> None:
        if since is not None:
            window = Window(min(since, self.today), min(until or self.today, self.today))
            self.sync_windows(window.slices(SLICE_DAYS), "insights")
            if self.joins_synced_days(window):
                backfilled = min(filter(None, [self.ad_account.backfilled_since, window.since]))
                self._set(last_synced_at=self.now, backfilled_since=backfilled)
            return
        window = self.recent()
        self.sync_windows(window.slices(SLICE_DAYS), "insights")
        # The moment the data is current as of: the run's start, whose day ended the window. The end of the
        # run may be a day later (a run across midnight), and the next sync reaches back only to that day.
        self._set(last_synced_at=self.now,
                  backfilled_since=min(filter(None, [self.ad_account.backfilled_since, window.since])))
        self.backfill(deadline=time.monotonic() + backfill_seconds if backfill_seconds is not None else None)

    def backfill(self, *, deadline: float | None) -> None:
        floor = backfill_floor(self.today)
        start = self.ad_account.backfilled_since
        done, total = 0, max(1, -(-(start - floor).days // SLICE_DAYS))
        while start > floor:
            if deadline is not None and time.monotonic() > deadline:
                return
            if not self.reader.has_data(Window(floor, start - dt.timedelta(days=1))):
                self._set(backfilled_since=floor)  # nothing older: the history is complete
                break
            window = Window(max(floor, start - dt.timedelta(days=SLICE_DAYS)), start - dt.timedelta(days=1))
            self._cover(window)
            self.reader.sync_window(window)
            start = window.since
            self._set(backfilled_since=start)
            self.heartbeat()
            done += 1
            self.progress("backfill", done, total)
        self.progress("backfill", total, total)


def sync_ad_account(ad_account: AdAccount, *, client: GraphClient, kind: str = SyncRun.Kind.FULL,
                    since: dt.date | None = None, until: dt.date | None = None, run: SyncRun | None = None,
                    poll_interval: float | None = None, page_size: int | None = None,
                    backfill_seconds: float | None = None, progress: Progress | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> SyncResult:
    """Sync one ad account now. Pass `run` (already claimed as running) to report into a queued run;
    otherwise a running SyncRun is opened here (Conflict when another is active)."""
    started = time.monotonic()
    now = timezone.now()
    if ad_account.parked_until and ad_account.parked_until > now:
        error = f"skipped: Meta throttled this ad account until {ad_account.parked_until.isoformat()}"
        if run is not None:
            run.status, run.error, run.finished_at = SyncRun.Status.PARKED, error, now
            run.save(update_fields=["status", "error", "finished_at", "updated_at"])
        return SyncResult(ad_account.meta_ad_account_id, "skipped", run.pk if run else None, error=error,
                          parked_until=ad_account.parked_until)
    if run is None:
        run = open_run(ad_account, kind, status=SyncRun.Status.RUNNING)
    if ad_account.parked_until:
        AdAccount.objects.filter(pk=ad_account.pk).update(parked_until=None)
        ad_account.parked_until = None
    graph = MeteredGraph(client)
    lease_lost = False
    reader_options = {"page_size": page_size} if page_size else {}
    job: _Sync | None = None
    try:
        reader = InsightsReader(ad_account, graph=graph, poll_interval=poll_interval, sleep=sleep, **reader_options)
        job = _Sync(ad_account, run, graph, reader, progress, now)
        reader.heartbeat = job.heartbeat
        graph.on_call = job.pulse
        if kind in (SyncRun.Kind.ENTITIES, SyncRun.Kind.FULL):
            job.entities = sync_entities(ad_account, graph=graph)
            job.progress("entities", 1, 1)
        if kind in (SyncRun.Kind.INSIGHTS, SyncRun.Kind.FULL):
            job.insights(since, until, backfill_seconds=backfill_seconds)
        run.status, run.error = SyncRun.Status.SUCCEEDED, ""
    except Throttled as throttle:
        if not throttle.hinted:
            throttle.seconds = default_park_seconds(parks_in_a_row(ad_account))
        parked_until = throttle.until(timezone.now())
        AdAccount.objects.filter(pk=ad_account.pk).update(parked_until=parked_until)
        ad_account.parked_until = parked_until
        run.status, run.error = SyncRun.Status.PARKED, f"{throttle.reason}; parked until {parked_until.isoformat()}"
    except GraphError as error:
        note_graph_error(ad_account.account, error)
        run.status = SyncRun.Status.FAILED
        run.error = ("Meta rejected the access token (code 190): reconnect Meta to resume syncing."
                     if error.is_token_invalid else str(error))
    except InsightsFailed as error:
        run.status, run.error = SyncRun.Status.FAILED, str(error)
    except LeaseLost as error:  # our heartbeat went stale and another worker runs this row now: hands off
        lease_lost = True
        run.error = str(error)
    except BaseException as error:  # a bug or a kill: never leave the run active (it would block syncs)
        run.status, run.error = SyncRun.Status.FAILED, f"{type(error).__name__}: {error}"[:2000]
        raise
    finally:
        graph.close()
        run.rows = job.reader.progress.rows if job else 0
        run.graph_calls = graph.calls
        run.finished_at = timezone.now()
        if not lease_lost:  # only while we hold the lease: never over the row of the worker that took over
            SyncRun.objects.filter(pk=run.pk, lease_owner=run.lease_owner).update(
                status=run.status, error=run.error, rows=run.rows, graph_calls=run.graph_calls, since=run.since,
                until=run.until, finished_at=run.finished_at, updated_at=run.finished_at, heartbeat_at=run.finished_at)
    return SyncResult(ad_account.meta_ad_account_id, run.status, run.pk, run.rows, job.entities.total if job else 0,
                      run.graph_calls, run.since, run.until, run.error, ad_account.parked_until,
                      time.monotonic() - started)


def parks_in_a_row(ad_account: AdAccount) -> int:
    """How many of the ad account's latest finished runs in a row were parked."""
    count = 0
    finished = SyncRun.objects.filter(ad_account=ad_account).exclude(status__in=[SyncRun.Status.QUEUED, SyncRun.Status.RUNNING])
    for status in finished.order_by("-created_at", "-id").values_list("status", flat=True)[:17]:
        if status != SyncRun.Status.PARKED:
            break
        count += 1
    return count


def perform_queued_run(run: SyncRun, *, poll_interval: float | None = None) -> SyncResult | None:
    """Run a SyncRun queued by the hub or the schedule, or take over one whose worker died (its lease expired,
    and django-q2 re-delivered the task); None when another live worker has it."""
    if not claim_run(run) and not take_over_stale_run(run):
        return None
    try:
        client = client_for_account(run.account)
    except NotConnected as error:  # disconnected since it was queued: close the run, do not retry
        run.status, run.error, run.finished_at = SyncRun.Status.FAILED, str(error), timezone.now()
        run.save(update_fields=["status", "error", "finished_at", "updated_at"])
        return SyncResult(run.ad_account.meta_ad_account_id, run.status, run.pk, error=run.error)
    try:
        return sync_ad_account(run.ad_account, client=client, kind=run.kind, run=run, poll_interval=poll_interval,
                               backfill_seconds=TASK_BACKFILL_SECONDS)
    finally:
        client.close()
