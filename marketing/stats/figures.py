"""The ROI figures of one account over windows of days, read from the daily rollup.

Period view (not a cohort view): every figure counts the events dated in the window.
- leads: Meta-attributed leads (``lead_source`` in ``Lead.META_SOURCES``) created in the window;
- opportunities: opportunities created in the window whose lead is Meta-attributed (whenever
  that lead arrived);
- revenue: completed (not refunded) sales closed in the window whose lead is Meta-attributed;
  customers: the distinct such leads (the divisor of ``cpa``);
- spend, impressions, clicks: DailyInsight rows dated in the window (the ad account's day).
Per campaign, the CRM figures follow ``Lead.meta_campaign_id`` and the Meta figures
``DailyInsight.meta_campaign_id``. CRM timestamps are cut at midnight in the account's timezone.
All ad accounts of the account count (also ones no longer selected): their leads count too.

Everything comes from the rollups (marketing.services.rollups keeps them equal to those definitions),
never from the leads, opportunities, sales and insights themselves, and no read grows with history
(bench/README.md has the figures): the account's figures from AccountDay (a row per day and currency),
one campaign's from CampaignDay (likewise), the figures of every campaign from their running totals
(CampaignToDate/CampaignTotal: two rows per campaign whatever the window). Distinct customers do not
add up across days: they are the window's completed sales (the ``sales`` measure) minus its repeat
sales (RepeatSale) whose previous sale of the same lead is in the window too. Several windows are read
in one pass (conditional aggregates): the stats endpoint reads the period and its previous period
together. Repeated reads come from the stats cache until the rollups change (marketing/services/stats_cache.py).
The cells that writes marked and no fold has re-derived yet are corrected on every read, cache or not
(marketing.stats.pending): the figures include every committed write.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta, timezone as dt_timezone
from functools import lru_cache
from itertools import chain
from decimal import Decimal
from typing import Iterable, Literal, Sequence
from zoneinfo import ZoneInfo

from django.db import connection
from django.utils import timezone as dj_timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.db.models import Count, F, Q, Sum, Value
from django.db.models.functions import Coalesce

from crm_marketing.models import Account, Lead, Sale
from marketing.models import AccountDay, CampaignDay, CampaignToDate, CampaignTotal, DailyInsight, RepeatSale
from marketing.services import stats_cache
from marketing.stats.pending import one_snapshot, pending_corrections, repeat_changes
from marketing.stats.values import CENT, ZERO, Converter, Figures, Scope
from marketing.time_ranges import Window

Key = Literal["total", "campaign", "day"]
TOTAL = "total"
MEASURES = CampaignDay.MEASURES
FIELDS = {name: CampaignDay._meta.get_field(name) for name in MEASURES}


def _span(windows: Sequence[Window]) -> Window:
    return Window(min(w.since for w in windows), max(w.until for w in windows))


def _day_rows(scope: Scope, windows: Sequence[Window], key: Key) -> list[dict]:
    """Measures per currency (and group key) as ``{measure}{i}`` for window i, summed from a row per day:
    AccountDay for the account, CampaignDay for one campaign (or grouped by campaign)."""
    span = _span(windows)
    model = AccountDay if scope.campaign_id is None and key != "campaign" else CampaignDay
    rows = model.objects.filter(account=scope.account, day__gte=span.since, day__lte=span.until)
    if scope.campaign_id is not None:
        rows = rows.filter(meta_campaign_id=scope.campaign_id)
    group = {"campaign": {"key": F("meta_campaign_id")}, "day": {"key": F("day")}}.get(key, {})
    sums = {
        f"{name}{i}": Sum(name, filter=Q(day__gte=window.since, day__lte=window.until)) if len(windows) > 1 else Sum(name)
        for name in MEASURES for i, window in enumerate(windows)
    }
    return list(rows.order_by().values("currency", **group).annotate(**sums))


def _campaign_figures(scope: Scope, window: Window) -> dict[str, Figures]:
    """Figures per campaign of one window: the running totals to ``until`` minus those to ``since - 1``
    (CampaignToDate), plus the totals of campaigns whose span ended in between (CampaignTotal). At most two
    rows per campaign and currency whatever the window; customers are still the window's sales here.
    On PostgreSQL one statement also converts the money; Python adds up the rows of a campaign (one per
    currency, and an ended campaign's total beside its running totals; thousands at scale, bench/README.md)."""
    before = window.since - timedelta(days=1)
    if connection.vendor == "postgresql":
        return _campaign_figures_sql(scope, before, window.until)
    differences = {
        name: Coalesce(Sum(name, filter=Q(day=window.until)), Value(0), output_field=FIELDS[name])
        - Coalesce(Sum(name, filter=Q(day=before)), Value(0), output_field=FIELDS[name])
        for name in MEASURES
    }
    to_date = (CampaignToDate.objects.filter(account=scope.account, day__in=[before, window.until]).order_by()
               .values("meta_campaign_id", "currency").annotate(**differences).values_list("meta_campaign_id", "currency", *MEASURES))
    ended = (CampaignTotal.objects.filter(account=scope.account, last_day__gte=before, last_day__lt=window.until)
             .values_list("meta_campaign_id", "currency", *MEASURES))
    converter = scope.converter
    out: dict[str, Figures] = defaultdict(Figures)
    for campaign, currency, spend, impressions, clicks, leads, opportunities, revenue, sales in chain(to_date, ended):
        if not (spend or impressions or clicks or leads or opportunities or revenue or sales):
            continue  # no figure of this campaign and currency in the window
        figures = out[campaign]
        figures.leads += leads
        figures.opportunities += opportunities
        figures.impressions += impressions
        figures.clicks += clicks
        figures.customers += sales
        figures.spend += converter.convert(currency, _cents(spend))
        figures.revenue += converter.convert(currency, _cents(revenue))
        if (spend or revenue) and not converter.can_convert(currency):
            figures.unconverted = True
    return out


def _campaign_figures_sql(scope: Scope, before: date, until: date) -> dict[str, Figures]:
    """One statement: each campaign and currency's running totals to ``until`` joined to those to ``before``
    (at most one row each: the unique cell), their differences, the ended campaigns' totals, the money
    converted; a row per campaign and currency with a figure in the window. Python adds up a campaign's
    currencies (a few rows more than campaigns): summing them in the statement too cost more than the rest of
    it together (numeric aggregates over every row, 11 of 26 ms with 5,000 campaigns, bench/README.md)."""
    converter = scope.converter
    rates = {converter.target: Decimal(1), **converter.rates}
    with connection.cursor() as cursor:
        cursor.execute(_campaign_figures_statement(), {
            "account": scope.account.pk, "before": before, "until": until,
            "currencies": list(rates), "rates": list(rates.values())})
        rows = cursor.fetchall()
    out: dict[str, Figures] = {}
    for campaign, currency, spend, impressions, clicks, leads, opportunities, revenue, sales, unconverted in rows:
        if spend is None:  # no rate: the money is left out of the sums, as convert() does, and the currency remembered
            converter.missing.add(currency)
            spend = revenue = ZERO
        row = Figures(leads, opportunities, revenue, sales, spend, impressions, clicks, unconverted)
        if campaign in out:  # another currency, or an ended campaign's total beside its running totals
            out[campaign].add(row)
        else:
            out[campaign] = row
    return out


@lru_cache(maxsize=None)
def _campaign_figures_statement() -> str:
    to_date, totals = (connection.ops.quote_name(model._meta.db_table) for model in (CampaignToDate, CampaignTotal))
    measures = ", ".join(MEASURES)

    def day(name: str) -> str:
        return f"(SELECT meta_campaign_id, currency, {measures} FROM {to_date} WHERE account_id = %(account)s AND day = %({name})s)"

    differences = ", ".join(f"COALESCE(u.{m}, 0) - COALESCE(b.{m}, 0) AS {m}" for m in MEASURES)
    return (
        f"WITH rates(currency, rate) AS (SELECT * FROM unnest(%(currencies)s::text[], %(rates)s::numeric[])), "
        f"pairs AS (SELECT meta_campaign_id, currency, {differences} "
        f"  FROM {day('until')} u FULL JOIN {day('before')} b USING (meta_campaign_id, currency) "
        f"  UNION ALL SELECT meta_campaign_id, currency, {measures} FROM {totals} "
        f"  WHERE account_id = %(account)s AND last_day >= %(before)s AND last_day < %(until)s) "
        f"SELECT p.meta_campaign_id, p.currency, p.spend * r.rate, p.impressions, p.clicks, p.leads, p.opportunities, "
        f"  p.revenue * r.rate, p.sales, r.rate IS NULL AND (p.spend <> 0 OR p.revenue <> 0) "
        f"FROM pairs p LEFT JOIN rates r USING (currency) WHERE {' OR '.join(f'p.{m} <> 0' for m in MEASURES)}")


def _repeats(scope: Scope, windows: Sequence[Window], key: Key) -> list[dict]:
    """Repeat sales per group key as ``n{i}``: completed Meta sales in window i whose lead's previous one (in the
    same campaign when the figures are per campaign) is in window i too. Customers = sales - repeats."""
    tz = scope.tz
    per_campaign = key == "campaign" or scope.campaign_id is not None
    previous = "previous_in_campaign_closed_at" if per_campaign else "previous_closed_at"
    start, end = _span(windows).bounds(tz)
    repeats = RepeatSale.objects.filter(account=scope.account, closed_at__gte=start, closed_at__lt=end, **{f"{previous}__gte": start})
    if scope.campaign_id is not None:
        repeats = repeats.filter(meta_campaign_id=scope.campaign_id)
    if key == "day":  # a repeat on its previous sale's (local) day
        counts: dict[date, dict] = {}
        for closed_at, previous_at in repeats.values_list("closed_at", previous):
            day = closed_at.astimezone(tz).date()
            if previous_at.astimezone(tz).date() == day:
                row = counts.setdefault(day, {"key": day, **{f"n{i}": 0 for i in range(len(windows))}})
                for i, window in enumerate(windows):
                    row[f"n{i}"] += window.since <= day <= window.until
        return list(counts.values())

    def within(window: Window) -> Q:
        low, high = window.bounds(tz)
        return Q(closed_at__gte=low, closed_at__lt=high, **{f"{previous}__gte": low})

    counts = {f"n{i}": Count("id", filter=within(window)) for i, window in enumerate(windows)}
    if key == "campaign":
        return list(repeats.order_by().values(key=F("meta_campaign_id")).annotate(**counts))
    return [{"key": TOTAL, **repeats.aggregate(**counts)}]


def _cents(amount) -> Decimal:
    """A sum of amounts in cents, exact: SQLite adds them up as floats (PostgreSQL's numeric is exact already)."""
    return Decimal(amount or 0).quantize(CENT)


def collect(scope: Scope, windows: Sequence[Window], key: Key = TOTAL, *, customers: bool = True) -> list[dict[str, Figures] | dict[date, Figures]]:
    """Figures per window, each a dict from the group key (TOTAL, campaign id or day) to Figures.

    ``customers=False`` skips the repeat-sales query for callers that show no ``cpa``. The rollups' figures come
    from the stats cache while the account's rollups are unchanged (marketing/services/stats_cache.py), keyed also
    by the exchange rates read for this request; the cells marked since the last fold are corrected on top, read
    in the same snapshot as the cache's version token (marketing.stats.pending)."""
    converter = scope.converter
    read = ("collect", tuple((w.since, w.until) for w in windows), key, scope.campaign_id, customers,
            scope.account.timezone, converter.target, tuple(sorted(converter.rates.items())))
    with one_snapshot():
        # A fresh object either way: the cache stores and returns pickled copies, so correcting it changes no entry.
        result, missing = stats_cache.cached(scope.account.pk, read, lambda: _collect(scope, windows, key, customers))
        converter.missing |= missing
        _add_pending(scope, windows, key, customers, result)
    return result


def _add_pending(scope: Scope, windows: Sequence[Window], key: Key, customers: bool, result: list[dict]) -> None:
    """Correct the figures by the marked cells' recomputed-minus-stored differences, and the customers by the
    repeat sales those cells' sales make or unmake."""
    corrections, crm_days = pending_corrections(scope.account, _span(windows), scope.campaign_id)
    converter = scope.converter
    for (day, campaign, currency), difference in corrections.items():
        group = {"campaign": campaign, "day": day}.get(key, TOTAL)
        for i, window in enumerate(windows):
            if not window.since <= day <= window.until:
                continue
            figures = result[i][group]
            for name in ("leads", "opportunities", "impressions", "clicks"):
                setattr(figures, name, getattr(figures, name) + difference.get(name, 0))
            figures.customers += difference.get("sales", 0)  # minus the repeat sales below
            for name in ("spend", "revenue"):
                if difference.get(name):
                    setattr(figures, name, getattr(figures, name) + converter.convert(currency, difference[name]))
                    figures.unconverted = figures.unconverted or not converter.can_convert(currency)
    if customers and crm_days:
        fresh, stored = repeat_changes(scope.account, crm_days)
        for rows, sign in ((fresh, 1), (stored, -1)):
            for row in _count_repeats(scope, windows, key, rows):
                for i in range(len(windows)):
                    if row[f"n{i}"]:
                        result[i][row["key"]].customers -= sign * row[f"n{i}"]


def _count_repeats(scope: Scope, windows: Sequence[Window], key: Key, repeats: Iterable[dict]) -> list[dict]:
    """``_repeats`` over RepeatSale-like rows in memory (the few a marked day's sales make or unmake)."""
    tz = scope.tz
    previous = "previous_in_campaign_closed_at" if key == "campaign" or scope.campaign_id is not None else "previous_closed_at"
    bounds = [window.bounds(tz) for window in windows]
    counts: dict = {}
    for row in repeats:
        previous_at = row[previous]
        if previous_at is None or (scope.campaign_id is not None and row["meta_campaign_id"] != scope.campaign_id):
            continue
        if key == "day":
            day = row["closed_at"].astimezone(tz).date()
            if previous_at.astimezone(tz).date() != day:
                continue
            group = day
            hits = [window.since <= day <= window.until for window in windows]
        else:
            group = row["meta_campaign_id"] if key == "campaign" else TOTAL
            hits = [low <= row["closed_at"] < high and previous_at >= low for low, high in bounds]
        if any(hits):
            counted = counts.setdefault(group, {"key": group, **{f"n{i}": 0 for i in range(len(windows))}})
            for i, hit in enumerate(hits):
                counted[f"n{i}"] += hit
    return list(counts.values())


def _collect(scope: Scope, windows: Sequence[Window], key: Key, customers: bool) -> tuple[list[dict], set[str]]:
    """``collect``'s figures read from the rollups, and the currencies they could not convert."""
    scope = Scope(scope.account, Converter(scope.converter.target, scope.converter.rates), scope.campaign_id)  # its own ``missing``
    if key == "campaign" and scope.campaign_id is None:
        result: list[dict] = [defaultdict(Figures, _campaign_figures(scope, window)) for window in windows]
        rows = []
    else:
        result = [defaultdict(Figures) for _ in windows]
        rows = _day_rows(scope, windows, key)
    convert = scope.converter.convert
    for row in rows:
        for i in range(len(windows)):
            figures = result[i][row.get("key", TOTAL)]
            figures.leads += row[f"leads{i}"] or 0
            figures.opportunities += row[f"opportunities{i}"] or 0
            figures.impressions += row[f"impressions{i}"] or 0
            figures.clicks += row[f"clicks{i}"] or 0
            figures.customers += row[f"sales{i}"] or 0  # minus the repeat sales below
            if row[f"spend{i}"] is not None:  # None: no cell of this currency in window i
                figures.spend += convert(row["currency"], _cents(row[f"spend{i}"]))
                figures.revenue += convert(row["currency"], _cents(row[f"revenue{i}"]))
                if not scope.converter.can_convert(row["currency"]) and (row[f"spend{i}"] or row[f"revenue{i}"]):
                    figures.unconverted = True
    if customers:
        for row in _repeats(scope, windows, key):
            for i in range(len(windows)):
                if row[f"n{i}"]:
                    result[i][row["key"]].customers -= row[f"n{i}"]
    return result, scope.converter.missing


def earliest_day(account: Account) -> date | None:
    """The account's first day with a lead, an insight or a sale (account timezone), for ``lifetime``.
    One statement (each first row from its index) on every lifetime read, written out once: compiling the
    ORM's three subqueries was a fifth of the web CPU under load."""
    tz = ZoneInfo(account.timezone)
    with connection.cursor() as cursor:
        cursor.execute(_earliest_sql(), [account.pk] * 3)
        first_lead, first_sale, first_insight = cursor.fetchone()
    days = [_aware(moment).astimezone(tz).date() for moment in (first_lead, first_sale) if moment is not None]
    if first_insight is not None:
        days.append(parse_date(first_insight) if isinstance(first_insight, str) else first_insight)
    return min(days) if days else None


def _aware(moment) -> datetime:
    """A timestamp as the database gave it (SQLite: ISO text in UTC) as an aware datetime."""
    moment = parse_datetime(moment) if isinstance(moment, str) else moment
    return moment.replace(tzinfo=dt_timezone.utc) if dj_timezone.is_naive(moment) else moment


@lru_cache(maxsize=None)
def _earliest_sql() -> str:
    q = connection.ops.quote_name

    def first(model, name: str) -> str:
        column = q(model._meta.get_field(name).column)
        return (f"(SELECT {column} FROM {q(model._meta.db_table)} WHERE {q(model._meta.get_field('account').column)} = %s "
                f"AND {column} IS NOT NULL ORDER BY {column} LIMIT 1)")

    return f"SELECT {first(Lead, 'created_at')}, {first(Sale, 'closed_at')}, {first(DailyInsight, 'date')}"
