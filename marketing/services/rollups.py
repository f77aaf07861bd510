"""The ROI rollup (``CampaignDay``): cells recomputed from their source rows, never incremented.

Every write is "recompute these cells from DailyInsight / Lead / Opportunity / Sale and write what
differs", so running one twice, late or out of order is harmless. Whatever a write changes in CampaignDay,
``_write`` carries into the coarser tables the long windows read (AccountDay, the campaigns' running
totals; marketing.services.coarse_rollups) in the same transaction, and ``refresh_crm_days`` and
``rebuild`` keep RepeatSale (the customers) with the sales; callers need not know they exist:

- ``refresh_meta_cells(account_id, [(day, campaign)])``: the Meta columns of those cells;
- ``refresh_crm_days(account_id, days)``: the CRM columns of every cell of those account days;
  both called by the fold (marketing.services.rollup_marks) for the cells that writes marked: CRM
  writes and insights upserts no longer call them in their own transactions;
- ``rebuild(account, since=)``: everything from ``since`` (or all history), a month per transaction,
  for backfills, bulk loads, a timezone change and the nightly safety net.

Every writer of the rollup (the fold, a rebuild) first takes the account's rollup lock (a PostgreSQL
advisory lock held to the end of the transaction), then reads. Under READ COMMITTED the statements
after the lock see everything committed before it, so of two writers of one cell the later one reads
the other's rows: no lost update. SQLite serializes writers anyway. CRM writes take no lock: they
only mark cells.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable, Iterable
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from crm_marketing.errors import DomainError
from crm_marketing.models import Account, Lead, Opportunity, Sale
from crm_marketing.services import repair_sale_attribution, sales_with_drifted_attribution
from crm_marketing.validation import EARLIEST_MOMENT, LATEST_MOMENT, MOMENT_RANGE
from marketing.models import AccountDay, CampaignDay, CampaignToDate, CampaignTotal, DailyInsight, RepeatSale
from marketing.services import coarse_rollups, stats_cache
from marketing.time_ranges import FIRST_DAY, Window

log = logging.getLogger("marketing.rollups")

LOCK_NAMESPACE = 0x524F4931  # "ROI1": the first key of pg_advisory_xact_lock(int, int)
CHUNK_DAYS = 31
Cell = tuple[dt.date, str, str]  # (day, meta_campaign_id, currency)
Sums = dict[Cell, dict[str, int | Decimal]]
Progress = Callable[[str, int, int], None]
UNIQUE = ["account", "day", "meta_campaign_id", "currency"]


def lock_account(account_id: int) -> None:
    """Serialize the rollup writers of one account until the current transaction ends, and give its
    rollup a new version (committed with the writer's rows: what the stats cache keys on)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, account_id & 0x7FFFFFFF])
    stats_cache.rollup_changed(account_id)


@dataclass(frozen=True)
class _Account:
    id: int
    tz: ZoneInfo
    currency: str


def _account(account_id: int) -> _Account | None:
    row = Account.objects.filter(pk=account_id).values_list("timezone", "currency").first()
    return _Account(account_id, ZoneInfo(row[0]), row[1]) if row else None


# -- reading the sources -------------------------------------------------------------------------------------
def _meta_sums(account_id: int, where: Q) -> Sums:
    rows = (DailyInsight.objects.filter(account_id=account_id).filter(where).order_by()
            .values(cell_day=F("date"), cell_campaign=F("meta_campaign_id"), cell_currency=F("currency"))
            .annotate(spend=Sum("spend"), impressions=Sum("impressions"), clicks=Sum("clicks")))
    return {(r["cell_day"], r["cell_campaign"], r["cell_currency"]):
            {"spend": r["spend"], "impressions": r["impressions"], "clicks": r["clicks"]} for r in rows}


def _crm_sums(account: _Account, window: Window, campaign_id: str | None = None) -> Sums:
    """Leads, opportunities (counted on the account's currency), revenue and sales per cell of the window (of
    one campaign's cells only, given ``campaign_id``)."""
    start, end = window.bounds(account.tz)
    sums: Sums = {}
    one = {} if campaign_id is None else {"meta_campaign_id": campaign_id}

    def add(day: dt.date, campaign: str, currency: str, name: str, value) -> None:
        sums.setdefault((day, campaign, currency), {"leads": 0, "opportunities": 0, "revenue": Decimal("0"), "sales": 0})[name] += value

    leads = (Lead.objects.filter(account_id=account.id, lead_source__in=Lead.META_SOURCES, created_at__gte=start, created_at__lt=end, **one)
             .order_by().values(cell_day=TruncDate("created_at", tzinfo=account.tz), cell_campaign=F("meta_campaign_id"))
             .annotate(n=Count("id")))
    for row in leads:
        add(row["cell_day"], row["cell_campaign"], account.currency, "leads", row["n"])
    # The lead's account too: the same tenant by construction, and it lets the join use the lead indexes.
    opportunities = (Opportunity.objects.filter(account_id=account.id, created_at__gte=start, created_at__lt=end,
                                                lead__account_id=account.id, lead__lead_source__in=Lead.META_SOURCES,
                                                **{f"lead__{name}": value for name, value in one.items()})
                     .order_by().values(cell_day=TruncDate("created_at", tzinfo=account.tz), cell_campaign=F("lead__meta_campaign_id"))
                     .annotate(n=Count("id")))
    for row in opportunities:
        add(row["cell_day"], row["cell_campaign"], account.currency, "opportunities", row["n"])
    sales = (Sale.objects.filter(account_id=account.id, status=Sale.Status.COMPLETED, lead_source__in=Lead.META_SOURCES,
                                 closed_at__gte=start, closed_at__lt=end, **one)
             .order_by().values(cell_day=TruncDate("closed_at", tzinfo=account.tz), cell_campaign=F("meta_campaign_id"),
                                cell_currency=F("currency"))
             .annotate(amount=Sum("amount"), n=Count("id")))
    for row in sales:
        add(row["cell_day"], row["cell_campaign"], row["cell_currency"], "revenue", row["amount"] or Decimal("0"))
        add(row["cell_day"], row["cell_campaign"], row["cell_currency"], "sales", row["n"])
    return sums


def derive_crm_days(account: Account, days: Iterable[dt.date], campaign_id: str | None = None) -> Sums:
    """The CRM figures of every cell of these account days (or of one campaign's), from the source rows: what
    refresh_crm_days would write (the stats read cells not yet folded this way, marketing.stats.pending)."""
    wanted = set(days)
    if not wanted:
        return {}
    account = _Account(account.pk, ZoneInfo(account.timezone), account.currency)
    runs = day_runs(wanted)
    if len(runs) > 8:  # scattered days: one range read instead of three queries per run
        runs = [Window(runs[0].since, runs[-1].until)]
    computed: Sums = {}
    for window in runs:
        computed.update(_crm_sums(account, window, campaign_id))
    return {cell: sums for cell, sums in computed.items() if cell[0] in wanted}


def derive_meta_cells(account_id: int, cells: Iterable[tuple[dt.date, str]]) -> Sums:
    """The Meta figures of these (day, campaign) cells, from the stored insights: what refresh_meta_cells
    would write."""
    wanted = set(cells)
    if not wanted:
        return {}
    computed = _meta_sums(account_id, Q(date__in={day for day, _ in wanted}, meta_campaign_id__in={c for _, c in wanted}))
    return {cell: sums for cell, sums in computed.items() if (cell[0], cell[1]) in wanted}


# -- writing what differs ------------------------------------------------------------------------------------
def _write(account_id: int, scope: Q, computed: Sums, measures: tuple[str, ...], *, derive: bool = True) -> int:
    """Make ``measures`` of the cells in ``scope`` equal ``computed`` (absent cells: 0); drop empty rows.

    Only cells whose figures changed are written, so a CRM write rewrites one row, not the day's; the
    coarser tables follow those cells (``derive=False``: the caller, a rebuild, derives them itself)."""
    zero = dict.fromkeys(measures, 0)
    nonzero = Q()
    for name in measures:
        nonzero |= ~Q(**{name: 0})
    current = {(r["day"], r["meta_campaign_id"], r["currency"]): {m: r[m] for m in measures}
               for r in CampaignDay.objects.filter(account_id=account_id).filter(scope).filter(nonzero)
               .values("day", "meta_campaign_id", "currency", *measures)}
    changed = []
    for cell in computed.keys() | current.keys():
        target = {name: computed.get(cell, {}).get(name) or 0 for name in measures}
        if current.get(cell, zero) != target:
            changed.append(CampaignDay(account_id=account_id, day=cell[0], meta_campaign_id=cell[1], currency=cell[2], **target))
    if changed:
        CampaignDay.objects.bulk_create(changed, batch_size=2000, update_conflicts=True, unique_fields=UNIQUE,
                                        update_fields=list(measures))
        CampaignDay.objects.filter(account_id=account_id).filter(scope).filter(**dict.fromkeys(CampaignDay.MEASURES, 0)).delete()
        if derive:
            coarse_rollups.derive(account_id, {(cell.day, cell.meta_campaign_id) for cell in changed})
    return len(changed)


def day_runs(days: Iterable[dt.date]) -> list[Window]:
    """Consecutive days as windows: {1, 2, 3, 7} -> [1..3, 7..7]."""
    runs: list[Window] = []
    for day in sorted(set(days)):
        if runs and runs[-1].until + dt.timedelta(days=1) == day:
            runs[-1] = Window(runs[-1].since, day)
        else:
            runs.append(Window(day, day))
    return runs


def refresh_crm_days(account_id: int, days: Iterable[dt.date]) -> int:
    """Recompute leads, opportunities, revenue and sales of every cell of these account days, and the repeat
    sales of the leads with sales on them; returns CampaignDay rows written."""
    runs = day_runs(days)
    if not runs:
        return 0
    with transaction.atomic():
        lock_account(account_id)
        account = _account(account_id)
        if account is None:  # deleted in this transaction
            return 0
        computed: Sums = {}
        scope = Q()
        for window in runs:
            computed.update(_crm_sums(account, window))
            scope |= Q(day__gte=window.since, day__lte=window.until)
        written = _write(account_id, scope, computed, CampaignDay.CRM_MEASURES)
        coarse_rollups.refresh_repeats(account_id, coarse_rollups.leads_with_sales_within(
            account_id, [window.bounds(account.tz) for window in runs]))
        return written


def refresh_meta_cells(account_id: int, cells: Iterable[tuple[dt.date, str]]) -> int:
    """Recompute spend, impressions and clicks of these (day, campaign) cells; returns CampaignDay rows written."""
    cells = set(cells)
    if not cells:
        return 0
    with transaction.atomic():
        lock_account(account_id)
        if connection.vendor == "postgresql":
            return _refresh_meta_cells_in_sql(account_id, cells)
        by_campaign: dict[str, set[dt.date]] = {}
        for day, campaign in cells:
            by_campaign.setdefault(campaign, set()).add(day)
        insights, rollup = Q(), Q()
        for campaign, days in by_campaign.items():
            insights |= Q(meta_campaign_id=campaign, date__in=days)
            rollup |= Q(meta_campaign_id=campaign, day__in=days)
        return _write(account_id, rollup, _meta_sums(account_id, insights), CampaignDay.META_MEASURES)


def _refresh_meta_cells_in_sql(account_id: int, cells: set[tuple[dt.date, str]]) -> int:
    """``refresh_meta_cells`` in two statements (a fold of a sync's marks re-derives thousands of cells).

    The insights are read through ``insight_account_date`` over the days the cells span: without that range
    PostgreSQL may scan the whole table, which grows with history. Rows of a cell in a currency its insights
    no longer have are zeroed like ``_write`` does; only rows whose figures changed are written, and only
    their cells' coarser rollups re-derived. A sort or hash of a sync's cells fits in 32 MB of work memory."""
    rollup = connection.ops.quote_name(CampaignDay._meta.db_table)
    insights = connection.ops.quote_name(DailyInsight._meta.db_table)
    days = sorted(day for day, _ in cells)
    params = {"account": account_id, "first": days[0], "last": days[-1],
              "days": [day for day, _ in cells], "campaigns": [campaign for _, campaign in cells]}
    touched = "(SELECT * FROM unnest(%(days)s::date[], %(campaigns)s::text[]) AS t(day, meta_campaign_id))"
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '32MB'")
        cursor.execute(
            f"WITH fresh AS (SELECT i.date AS day, i.meta_campaign_id, i.currency, SUM(i.spend) AS spend, "
            f"SUM(i.impressions) AS impressions, SUM(i.clicks) AS clicks "
            f"FROM {insights} i JOIN {touched} t ON i.date = t.day AND i.meta_campaign_id = t.meta_campaign_id "
            f"WHERE i.account_id = %(account)s AND i.date BETWEEN %(first)s AND %(last)s "
            f"GROUP BY i.date, i.meta_campaign_id, i.currency) "
            f"INSERT INTO {rollup} AS c (account_id, day, meta_campaign_id, currency, spend, impressions, clicks, "
            f"leads, opportunities, revenue, sales) "
            f"SELECT %(account)s, day, meta_campaign_id, currency, spend, impressions, clicks, 0, 0, 0, 0 FROM fresh "
            f"UNION ALL SELECT %(account)s, s.day, s.meta_campaign_id, s.currency, 0, 0, 0, 0, 0, 0, 0 "
            f"FROM {rollup} s JOIN {touched} t ON s.day = t.day AND s.meta_campaign_id = t.meta_campaign_id "
            f"WHERE s.account_id = %(account)s AND s.day BETWEEN %(first)s AND %(last)s "
            f"AND NOT EXISTS (SELECT 1 FROM fresh f WHERE f.day = s.day AND f.meta_campaign_id = s.meta_campaign_id "
            f"AND f.currency = s.currency) "
            f"ON CONFLICT (account_id, day, meta_campaign_id, currency) DO UPDATE SET spend = EXCLUDED.spend, "
            f"impressions = EXCLUDED.impressions, clicks = EXCLUDED.clicks "
            f"WHERE (c.spend, c.impressions, c.clicks) IS DISTINCT FROM (EXCLUDED.spend, EXCLUDED.impressions, EXCLUDED.clicks) "
            f"RETURNING c.day, c.meta_campaign_id", params)
        written = cursor.fetchall()
        changed = set(written)
        if changed:
            cursor.execute(
                f"DELETE FROM {rollup} c USING {touched} t "
                f"WHERE c.day = t.day AND c.meta_campaign_id = t.meta_campaign_id "
                f"AND c.account_id = %(account)s AND c.day BETWEEN %(first)s AND %(last)s "
                f"AND c.spend = 0 AND c.impressions = 0 AND c.clicks = 0 AND c.leads = 0 AND c.opportunities = 0 "
                f"AND c.revenue = 0 AND c.sales = 0", params)
            coarse_rollups.derive(account_id, changed)
    return len(written)


# -- repairs -----------------------------------------------------------------------------------------------
def repair_sale_copies(account: Account) -> int:
    """Re-copy the attribution of the sales whose copy drifted from their lead's and mark the days it moved,
    whatever their age: each sale's closed day, its lead's created day and the lead's opportunities' days (a
    lead changed by queryset.update() or SQL moved those cells too). One transaction: the reads include the
    repaired copies from the commit on. Returns how many sales changed."""
    from marketing.services import rollup_marks  # it calls this module's refresh functions

    tz = ZoneInfo(account.timezone)
    with transaction.atomic():
        drifted = list(sales_with_drifted_attribution(account).values_list("lead_id", "closed_at"))
        if not drifted:
            return 0
        repaired = repair_sale_attribution(account)
        lead_ids = {lead_id for lead_id, _ in drifted}
        moments = [closed_at for _, closed_at in drifted]
        moments += Lead.objects.filter(pk__in=lead_ids).values_list("created_at", flat=True)
        moments += Opportunity.objects.filter(lead_id__in=lead_ids).values_list("created_at", flat=True)
        rollup_marks.mark_dirty(account.pk, days={moment.astimezone(tz).date() for moment in moments})
    return repaired


# -- rebuild -------------------------------------------------------------------------------------------------
@dataclass
class RebuildResult:
    account: str
    since: dt.date | None = None
    until: dt.date | None = None
    rows_written: int = 0
    sales_reattributed: int = 0

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1 if self.since and self.until else 0


class SourceOutOfRange(DomainError):
    """A source row dated outside what the API and the admin accept (written around them, e.g. in SQL):
    its account cannot be rebuilt until the row is fixed."""

    code = "rollup_source_out_of_range"


def activity_span(account: Account, since: dt.date | None = None) -> tuple[dt.date, dt.date] | None:
    """The first and last day (account timezone; insights on their own day) with any source row.
    SourceOutOfRange when a row lies outside crm_marketing.validation's range (the windows built around
    it would run past what ``datetime`` holds)."""
    tz = ZoneInfo(account.timezone)
    moments = {
        "lead created_at": Lead.objects.filter(account=account, lead_source__in=Lead.META_SOURCES).aggregate(a=Min("created_at"), b=Max("created_at")),
        "opportunity created_at": Opportunity.objects.filter(account=account).aggregate(a=Min("created_at"), b=Max("created_at")),
        "sale closed_at": Sale.objects.filter(account=account).aggregate(a=Min("closed_at"), b=Max("closed_at")),
        "insight date": DailyInsight.objects.filter(account=account).aggregate(a=Min("date"), b=Max("date")),
    }
    for name, pair in moments.items():
        for moment in pair.values():
            if moment is None:
                continue
            low, high = (EARLIEST_MOMENT, LATEST_MOMENT) if isinstance(moment, dt.datetime) else (EARLIEST_MOMENT.date(), LATEST_MOMENT.date())
            if not low <= moment <= high:
                raise SourceOutOfRange(f"a {name} of {moment.isoformat()} is out of range "
                                       f"({MOMENT_RANGE}); fix that row and rebuild")
    days = [moment.astimezone(tz).date() if isinstance(moment, dt.datetime) else moment
            for pair in moments.values() for moment in pair.values() if moment is not None]
    if not days:
        return None
    first, last = min(days), max(days)
    if since is not None:
        first = since
    return (first, last) if first <= last else None


def rebuild(account: Account, *, since: dt.date | None = None, progress: Progress | None = None) -> RebuildResult:
    """Re-derive the account's rollups from ``since`` (default: all history), a month per transaction, then
    the campaigns' running totals from ``since``, a batch of campaigns per transaction.

    Sales whose attribution copy drifted are re-copied first (``repair_sale_copies``: their days are
    marked whatever their age, so older days than ``since`` are folded too). The span is read and
    the cells outside it dropped under the rollup lock: a CRM write committed in between (a lead on a new last
    day) would otherwise have its fresh cell deleted as "outside". ``rows_written`` counts CampaignDay rows."""
    result = RebuildResult(account.slug, sales_reattributed=repair_sale_copies(account))
    with transaction.atomic():
        lock_account(account.pk)
        span = activity_span(account, since)
        result.rows_written += _drop_outside(account, since, span)
    if span is not None:
        result.since, result.until = span
        chunks = Window(*span).days
        windows = [Window(span[0] + dt.timedelta(days=i), min(span[1], span[0] + dt.timedelta(days=i + CHUNK_DAYS - 1)))
                   for i in range(0, chunks, CHUNK_DAYS)]
        for number, window in enumerate(windows, 1):
            with transaction.atomic():
                lock_account(account.pk)
                fresh = _account(account.pk)
                computed = _meta_sums(account.pk, Q(date__gte=window.since, date__lte=window.until))
                for cell, crm in _crm_sums(fresh, window).items():
                    computed.setdefault(cell, {}).update(crm)
                result.rows_written += _write(account.pk, Q(day__gte=window.since, day__lte=window.until), computed,
                                              CampaignDay.MEASURES, derive=False)
                coarse_rollups.refresh_account_days(account.pk, [window.since + dt.timedelta(days=i) for i in range(window.days)])
                coarse_rollups.refresh_repeats(account.pk, coarse_rollups.leads_with_sales_within(account.pk, [window.bounds(fresh.tz)]))
            if progress:
                progress("rollups", number, len(windows))
    _rebuild_to_date(account.pk, since)
    return result


def _drop_outside(account: Account, since: dt.date | None, span: tuple[dt.date, dt.date] | None) -> int:
    """Delete the rows from ``since`` on outside the activity span (CampaignDay and AccountDay by day,
    RepeatSale by closing moment); returns the CampaignDay rows deleted."""
    deleted = 0
    for model in (CampaignDay, AccountDay):
        outside = model.objects.filter(account=account)
        if since is not None:
            outside = outside.filter(day__gte=since)
        if span is not None:
            outside = outside.exclude(day__gte=span[0], day__lte=span[1])
        count = outside.delete()[0]
        deleted += count if model is CampaignDay else 0
    tz = ZoneInfo(account.timezone)
    repeats = RepeatSale.objects.filter(account=account)
    if since is not None:
        repeats = repeats.filter(closed_at__gte=Window(since, since).bounds(tz)[0])
    if span is not None:
        start, end = Window(*span).bounds(tz)
        repeats = repeats.exclude(closed_at__gte=start, closed_at__lt=end)
    repeats.delete()
    return deleted


def _rebuild_to_date(account_id: int, since: dt.date | None) -> None:
    """The running totals of every campaign with a cell from ``since`` on (or a span reaching it), recomputed from
    ``since``; over all history (``since`` None) from scratch, and campaigns with no cell left dropped."""
    cells = CampaignDay.objects.filter(account_id=account_id)
    if since is None:
        campaigns = set(cells.values_list("meta_campaign_id", flat=True).distinct())
        stale = set(CampaignTotal.objects.filter(account_id=account_id).values_list("meta_campaign_id", flat=True)) - campaigns
        for model in (CampaignToDate, CampaignTotal):
            model.objects.filter(account_id=account_id, meta_campaign_id__in=stale).delete()
    else:
        campaigns = (set(cells.filter(day__gte=since).values_list("meta_campaign_id", flat=True).distinct())
                     | set(CampaignTotal.objects.filter(account_id=account_id, last_day__gte=since)
                           .values_list("meta_campaign_id", flat=True)))
    ordered = sorted(campaigns)
    for start in range(0, len(ordered), coarse_rollups.BATCH):
        with transaction.atomic():
            lock_account(account_id)
            batch = ordered[start:start + coarse_rollups.BATCH]
            coarse_rollups.refresh_to_date(account_id, dict.fromkeys(batch, since or FIRST_DAY), fresh=since is None)


@dataclass
class RebuildOutcome:
    """A rebuild of several accounts: what each that succeeded did, and why each other failed."""

    results: list[RebuildResult] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # slug -> error

    def failure_line(self) -> str:
        """"" when nothing failed, else one line naming each failed account and its error."""
        if not self.failures:
            return ""
        plural = "" if len(self.failures) == 1 else "s"
        return (f"{len(self.failures)} account{plural} failed: "
                + "; ".join(f"{slug}: {error}" for slug, error in self.failures.items()))


def rebuild_accounts(accounts: Iterable[Account], *, since: Callable[[Account], dt.date | None] = lambda a: None,
                     progress: Callable[[Account], Progress | None] = lambda a: None) -> RebuildOutcome:
    """``rebuild`` each account in turn; one that fails (a bad row, a bug) is logged and the others still
    run, so one account's data never stops the nightly safety net of every account after it."""
    outcome = RebuildOutcome()
    for account in accounts:
        try:
            outcome.results.append(rebuild(account, since=since(account), progress=progress(account)))
        except Exception as error:  # noqa: BLE001 - the next account must run whatever this one hit
            log.exception("ROI rollup rebuild of account %s failed", account.slug)
            outcome.failures[account.slug] = (str(error) if isinstance(error, DomainError)
                                              else f"{type(error).__name__}: {error}")[:500]
    return outcome


def rebuild_recent(days: int = 35) -> RebuildOutcome:
    """The nightly safety net: every account's last ``days`` days (its own today)."""
    def since(account: Account) -> dt.date:
        return timezone.localdate(timezone=ZoneInfo(account.timezone)) - dt.timedelta(days=days - 1)

    return rebuild_accounts(Account.objects.order_by("pk"), since=since)
