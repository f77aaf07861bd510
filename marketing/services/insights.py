"""Daily ad-level insights through Meta's async report runs, upserted so restated days overwrite.

One report run per window: POST act_X/insights -> poll GET /{run} until "Job Completed" (100 percent
is not enough: Meta reports 100 while still "Job Running") -> read every page of /{run}/insights.
A "Job Failed" run or error code 1 ("reduce the amount of data") halves the window and retries,
down to one day. Days are in the ad account's timezone.
"""
from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Callable, Iterable, Sequence

from django.conf import settings
from django.utils import timezone

from crm_marketing.graph import GraphError
from marketing.models import AdAccount
from marketing.services.entities import AdDirectory
from marketing.services.insight_store import InsightValues, upsert_insights
from marketing.services.metered import MeteredGraph
from marketing.time_ranges import Window

INSIGHT_FIELDS = ("account_id,account_currency,campaign_id,campaign_name,adset_id,adset_name,ad_id,ad_name,"
                  "date_start,date_stop,spend,impressions,clicks,inline_link_clicks,reach,actions,cost_per_action_type")
ATTRIBUTION_WINDOWS = ["7d_click", "1d_view"]
RESTATEMENT_DAYS = 28  # Meta restates the last 28 days: every sync re-reads [today-28d, today]
PAGE_SIZE = 500
MAX_POLL_SECONDS = 15.0
TOO_MUCH_DATA_CODE = 1
CENT = Decimal("0.01")


class ReportTooLarge(Exception):
    """Meta could not build the report (Job Failed, or code 1): ask for a shorter window."""


class InsightsFailed(Exception):
    """The window cannot be synced (even one day failed, or the run never finished)."""


@dataclass
class InsightsProgress:
    """Running totals a sync reports to its SyncRun and the command's progress bar."""

    rows: int = 0
    ads_created: int = 0
    windows: int = 0


def ad_account_today(ad_account: AdAccount, now: dt.datetime | None = None) -> dt.date:
    try:
        tz = zoneinfo.ZoneInfo(ad_account.timezone_name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = dt.timezone.utc
    return (now or timezone.now()).astimezone(tz).date()


def restatement_window(today: dt.date) -> Window:
    return Window(today - dt.timedelta(days=RESTATEMENT_DAYS), today)


def lead_count(actions: Sequence[dict[str, Any]] | None, lead_types: Iterable[str]) -> int:
    """Leads of one row: the largest of the configured lead action types present, not their sum.

    Meta reports the same leads under several types at once (`lead` and
    `onsite_conversion.lead_grouped` for a Lead Ads form), so adding them would double count.
    """
    wanted = set(lead_types)
    counts = [_int(a.get("value")) for a in actions or () if a.get("action_type") in wanted]
    return max(counts, default=0)


def _int(value: Any) -> int:
    try:
        return int(Decimal(str(value)))
    except (InvalidOperation, ValueError, TypeError):
        return 0


def _money(value: Any) -> Decimal:
    try:
        return Decimal(str(value)).quantize(CENT, ROUND_HALF_UP)
    except (InvalidOperation, ValueError, TypeError):
        return Decimal("0.00")


def insight_values(ad_account: AdAccount, row: dict[str, Any], *, lead_types: Sequence[str],
                   synced_at: dt.datetime) -> InsightValues:
    """One Graph insight row as a DailyInsight tuple (insight_store.COLUMNS order)."""
    return (ad_account.account_id, ad_account.pk, row.get("campaign_id") or "", row.get("adset_id") or "", row["ad_id"],
            dt.date.fromisoformat(row["date_start"]), row.get("account_currency") or ad_account.currency,
            max(_money(row.get("spend")), Decimal("0.00")), _int(row.get("impressions")), _int(row.get("clicks")),
            _int(row.get("inline_link_clicks")), _int(row.get("reach")), lead_count(row.get("actions"), lead_types),
            synced_at)


class InsightsReader:
    """Runs report runs for one ad account and stores what they return."""

    def __init__(self, ad_account: AdAccount, *, graph: MeteredGraph, poll_interval: float | None = None,
                 max_wait: float = 240.0, page_size: int = PAGE_SIZE, heartbeat: Callable[[], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.ad_account = ad_account
        self.graph = graph
        self.poll_interval = float(poll_interval if poll_interval is not None
                                   else getattr(settings, "META_INSIGHTS_POLL_SECONDS", 2.0))
        self.max_wait = max_wait
        self.page_size = page_size
        self.heartbeat = heartbeat or (lambda: None)
        self.sleep = sleep
        self.lead_types = list(getattr(settings, "META_LEAD_ACTION_TYPES", ["lead"]))
        self.directory = AdDirectory(ad_account)
        self.progress = InsightsProgress()

    # -- windows ------------------------------------------------------------------------------------
    def sync_window(self, window: Window) -> int:
        """Sync one window, halving it on "too large" down to single days; returns rows stored."""
        stored = 0
        pending = [window]
        while pending:
            current = pending.pop()
            try:
                stored += self._run_report(current)
            except ReportTooLarge as exc:
                if current.days == 1:
                    raise InsightsFailed(f"Meta could not build the report for {current}: {exc}") from exc
                older, newer = current.halves()
                pending += [older, newer]  # newest first
        self.progress.windows += 1
        return stored

    def has_data(self, window: Window) -> bool:
        """One cheap synchronous account-level call: is there any spend or impression in the window?"""
        try:
            page = self.graph.get(f"{self.ad_account.meta_ad_account_id}/insights", {
                "level": "account", "time_increment": "all_days", "time_range": window.as_dict(),
                "fields": "spend,impressions"})
        except GraphError as error:
            if error.code == TOO_MUCH_DATA_CODE or error.is_transient:
                return True  # cannot tell: read the window the long way
            raise
        return any(_money(r.get("spend")) > 0 or _int(r.get("impressions")) > 0 for r in page.get("data") or ())

    # -- one report run ---------------------------------------------------------------------------
    def _run_report(self, window: Window) -> int:
        run_id = self._start(window)
        self._wait(run_id, window)
        stored = 0
        synced_at = timezone.now()
        try:
            for page in self.graph.iter_pages(f"{run_id}/insights", {"limit": self.page_size}):
                stored += self._store(page, synced_at)
                self.heartbeat()
        except GraphError as error:
            if error.code == TOO_MUCH_DATA_CODE:
                raise ReportTooLarge(error.message) from error
            raise
        return stored

    def _start(self, window: Window) -> str:
        try:
            # Retried on 5xx / transient codes: a POST that did reach Meta only leaves an orphaned report run.
            started = self.graph.post(f"{self.ad_account.meta_ad_account_id}/insights", {
                "level": "ad", "time_increment": 1, "time_range": window.as_dict(), "fields": INSIGHT_FIELDS,
                "action_breakdowns": ["action_type"], "action_attribution_windows": ATTRIBUTION_WINDOWS},
                retry_post=True)
        except GraphError as error:
            if error.code == TOO_MUCH_DATA_CODE:
                raise ReportTooLarge(error.message) from error
            raise
        run_id = str(started.get("report_run_id") or "")
        if not run_id:
            raise InsightsFailed(f"Meta did not return a report run for {window}")
        return run_id

    def _wait(self, run_id: str, window: Window) -> None:
        waited, interval = 0.0, self.poll_interval
        while True:
            self.sleep(interval)
            waited += interval
            status = self.graph.get(run_id)
            self.heartbeat()
            state = status.get("async_status")
            if state == "Job Completed":
                return
            if state in ("Job Failed", "Job Skipped"):
                raise ReportTooLarge(f"report run {run_id} for {window}: {state} "
                                     f"({status.get('error_code')}: {status.get('error_message', '')})")
            if waited >= self.max_wait:
                raise InsightsFailed(f"report run {run_id} for {window} did not complete in {self.max_wait:.0f} s "
                                     f"(last status {state}, {status.get('async_percent_completion')}%)")
            interval = min(interval * 1.5, MAX_POLL_SECONDS)

    def _store(self, page: list[dict[str, Any]], synced_at: dt.datetime) -> int:
        rows = [r for r in page if r.get("ad_id") and r.get("date_start")]
        self.progress.ads_created += self.directory.ensure(rows)
        stored = upsert_insights([insight_values(self.ad_account, r, lead_types=self.lead_types, synced_at=synced_at)
                                  for r in rows])
        self.progress.rows += stored
        return stored
