"""The coarser ROI rollups, derived from CampaignDay (and Sale) in the rollup writers' transactions.

marketing.services.rollups writes CampaignDay and calls these under the account's rollup lock, so every
caller of its write functions keeps them exact without knowing they exist:

- ``AccountDay``: a day's cells summed per currency (the headline figures and the account's chart read a
  row per day, whatever the number of campaigns);
- ``CampaignToDate`` + ``CampaignTotal``: each campaign's running total on every day of its span, and its
  span and total: a window's figures per campaign are "to ``until``" minus "to ``since - 1``", at most
  two rows per campaign and currency whatever the window (lifetime included);
- ``RepeatSale``: the completed Meta sales whose lead had an earlier one; customers (the ``cpa`` divisor,
  distinct leads, not additive) are the window's ``sales`` minus its repeat sales whose previous sale is in
  the window too.

Like CampaignDay, every refresh recomputes from what it derives from and writes what differs. A running
total is recomputed from the first day that may have changed, on top of the total of the day before it
(the rows before that day are unchanged by definition). On PostgreSQL that is a few set-based
statements (``generate_series`` fills the days without a cell); elsewhere (SQLite) the same in Python.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Iterable, Mapping

from django.db import connection
from django.db.models import Q, Sum

from crm_marketing.models import Lead, Sale
from marketing.models import AccountDay, CampaignDay, CampaignToDate, CampaignTotal, RepeatSale, RollupFigures

MEASURES = RollupFigures.MEASURES
BATCH = 500
Pair = tuple[str, str]  # (meta_campaign_id, currency)


def _batches(items: list, size: int = BATCH) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _zero(values: Mapping) -> bool:
    return not any(values[name] for name in MEASURES)


# -- AccountDay ----------------------------------------------------------------------------------------------
def refresh_account_days(account_id: int, days: Iterable[dt.date]) -> int:
    """Make the AccountDay rows of these days equal their CampaignDay sums; returns rows written."""
    written = 0
    for batch in _batches(sorted(set(days))):
        computed = {(r["day"], r["currency"]): {m: r[m] for m in MEASURES}
                    for r in CampaignDay.objects.filter(account_id=account_id, day__in=batch).order_by()
                    .values("day", "currency").annotate(**{m: Sum(m) for m in MEASURES})}
        current = {(r["day"], r["currency"]): {m: r[m] for m in MEASURES}
                   for r in AccountDay.objects.filter(account_id=account_id, day__in=batch).values("day", "currency", *MEASURES)}
        changed = [AccountDay(account_id=account_id, day=key[0], currency=key[1], **values)
                   for key, values in computed.items() if current.get(key) != values and not _zero(values)]
        gone = [key for key in current if key not in computed or _zero(computed[key])]
        if changed:
            AccountDay.objects.bulk_create(changed, update_conflicts=True, unique_fields=["account", "day", "currency"],
                                           update_fields=list(MEASURES))
        if gone:
            stale = Q()
            for day, currency in gone:
                stale |= Q(day=day, currency=currency)
            AccountDay.objects.filter(account_id=account_id).filter(stale).delete()
        written += len(changed) + len(gone)
    return written


# -- CampaignToDate / CampaignTotal --------------------------------------------------------------------------
def refresh_to_date(account_id: int, from_days: Mapping[str, dt.date], *, fresh: bool = False) -> None:
    """Recompute the running totals of these campaigns (every currency) from their day on.

    ``fresh``: ignore what is stored (spans, totals) and derive each campaign's whole span from CampaignDay
    (``from_days`` then holds the first day of the rebuilt range, before any cell)."""
    if not from_days:
        return
    items = sorted(from_days.items())
    for batch in _batches(items):
        if connection.vendor == "postgresql":
            _to_date_sql(account_id, dict(batch), fresh)
        else:
            _to_date_python(account_id, dict(batch), fresh)


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _to_date_sql(account_id: int, from_days: Mapping[str, dt.date], fresh: bool) -> None:
    """Two statements: plan each (campaign, currency) and drop its rows from its start day; then insert the running
    totals of every day of its span from there (generate_series) and upsert its total from the last one."""
    cells, to_date, totals = _table(CampaignDay), _table(CampaignToDate), _table(CampaignTotal)
    # min_day: a constant lower bound on the days either statement touches, so the planner reads the rows of those
    # days through the (account, day, ...) indexes instead of hashing the account's whole tables (a fold of today
    # read all 400,000 CampaignDay and 490,000 CampaignToDate rows of the 1 M-lead account: 0.8 s).
    params = {"account": account_id, "campaigns": list(from_days), "days": list(from_days.values()), "fresh": fresh,
              "min_day": min(from_days.values())}
    if fresh:  # spans and totals from the cells alone, from an empty start
        spans, start = "x.lo, x.hi", "s.from_day"
        base_of = {m: "0" for m in MEASURES}
        drop = (f"DELETE FROM {to_date} WHERE account_id = %(account)s AND meta_campaign_id = ANY(%(campaigns)s)), "
                f"dropped_totals AS (DELETE FROM {totals} WHERE account_id = %(account)s AND meta_campaign_id = ANY(%(campaigns)s)")
    else:
        spans = "LEAST(t.first_day, x.lo), GREATEST(t.last_day, x.hi)"
        start = "CASE WHEN s.from_day > t.last_day + 1 THEN t.last_day + 1 ELSE s.from_day END"
        base_of = {m: (f"CASE WHEN t.last_day IS NULL OR s.from_day <= t.first_day THEN 0 "
                       f"WHEN s.from_day > t.last_day THEN t.{m} ELSE r.{m} END") for m in MEASURES}
        # A pair's start day is its from day (never before min_day) or, when that lies past its span, the day after its
        # stored last day, where the pair has no running-total row (spans only grow; a pair left with nothing loses
        # both its rows and its total): the bound keeps every row the plan drops.
        drop = (f"DELETE FROM {to_date} r USING plan p WHERE r.account_id = %(account)s AND r.meta_campaign_id = p.meta_campaign_id "
                f"AND r.currency = p.currency AND r.day >= p.start_day AND r.day >= %(min_day)s")
    with connection.cursor() as cursor:
        # One row per (campaign, currency) the stored totals or the cells from its day on know.
        cursor.execute(
            f"WITH s AS (SELECT * FROM unnest(%(campaigns)s::text[], %(days)s::date[]) AS s(meta_campaign_id, from_day)), "
            f"x AS (SELECT c.meta_campaign_id, c.currency, MIN(c.day) AS lo, MAX(c.day) AS hi FROM {cells} c "
            f"  JOIN s ON c.meta_campaign_id = s.meta_campaign_id AND c.day >= s.from_day WHERE c.account_id = %(account)s GROUP BY 1, 2), "
            f"k AS (SELECT t.meta_campaign_id, t.currency FROM {totals} t JOIN s USING (meta_campaign_id) "
            f"  WHERE t.account_id = %(account)s AND NOT %(fresh)s UNION SELECT meta_campaign_id, currency FROM x), "
            f"plan AS (SELECT k.meta_campaign_id, k.currency, {start} AS start_day, {spans}, "
            f"  {', '.join(f'{base_of[m]} AS b_{m}' for m in MEASURES)} "
            f"  FROM k JOIN s USING (meta_campaign_id) LEFT JOIN x USING (meta_campaign_id, currency) "
            f"  LEFT JOIN {totals} t ON t.account_id = %(account)s AND t.meta_campaign_id = k.meta_campaign_id AND t.currency = k.currency "
            f"  LEFT JOIN {to_date} r ON r.account_id = %(account)s AND r.meta_campaign_id = k.meta_campaign_id "
            f"    AND r.currency = k.currency AND r.day = s.from_day - 1), "
            f"dropped AS ({drop}) "
            f"SELECT * FROM plan", params)
        plan = cursor.fetchall()
        if not plan:
            return
        columns = list(zip(*plan))
        first_filled = _first_filled(plan, default=params["min_day"])
        types = ("text", "text", "date", "date", "date", *("numeric" if m in ("spend", "revenue") else "bigint" for m in MEASURES))
        names = ("meta_campaign_id", "currency", "start_day", "first_day", "last_day", *(f"b_{m}" for m in MEASURES))
        unnest = ", ".join(f"%s::{t}[]" for t in types)
        sums = ", ".join(f"p.b_{m} + SUM(COALESCE(c.{m}, 0)) OVER w" for m in MEASURES)
        updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in ("first_day", "last_day", *MEASURES))
        cursor.execute(
            f"WITH p AS (SELECT * FROM unnest({unnest}) AS p({', '.join(names)})), "
            f"ins AS (INSERT INTO {to_date} (account_id, day, meta_campaign_id, currency, {', '.join(MEASURES)}) "
            f"  SELECT %s, g.day, p.meta_campaign_id, p.currency, {sums} FROM p "
            f"  CROSS JOIN LATERAL (SELECT d::date AS day FROM generate_series(GREATEST(p.start_day, p.first_day), p.last_day, "
            f"    interval '1 day') AS d) g "
            f"  LEFT JOIN {cells} c ON c.account_id = %s AND c.day = g.day AND c.meta_campaign_id = p.meta_campaign_id "
            f"    AND c.currency = p.currency AND c.day >= %s "
            f"  WINDOW w AS (PARTITION BY p.meta_campaign_id, p.currency ORDER BY g.day) "
            f"  RETURNING day, meta_campaign_id, currency, {', '.join(MEASURES)}) "
            f"INSERT INTO {totals} (account_id, meta_campaign_id, currency, first_day, last_day, {', '.join(MEASURES)}) "
            f"SELECT %s, p.meta_campaign_id, p.currency, p.first_day, p.last_day, {', '.join(f'ins.{m}' for m in MEASURES)} "
            f"FROM p JOIN ins ON ins.meta_campaign_id = p.meta_campaign_id AND ins.currency = p.currency AND ins.day = p.last_day "
            f"ON CONFLICT (account_id, meta_campaign_id, currency) DO UPDATE SET {updates} "
            f"RETURNING meta_campaign_id, currency, {', '.join(MEASURES)}",
            [*map(list, columns), account_id, account_id, first_filled, account_id])
        # A campaign with nothing left in a currency (all its figures moved or removed) leaves that pair.
        for campaign, currency, *values in cursor.fetchall():
            if not any(values):
                for table in (to_date, totals):
                    cursor.execute(f"DELETE FROM {table} WHERE account_id = %s AND meta_campaign_id = %s AND currency = %s",
                                   [account_id, campaign, currency])


def _first_filled(plan: list[tuple], *, default: dt.date) -> dt.date:
    """The first day the insert's series fills for any pair of the plan (its GREATEST(start_day, first_day)); a
    pair whose span ends before it fills none (a campaign that ended before the marked day)."""
    days = []
    for _, _, start, first, last, *_ in plan:
        begin = max(day for day in (start, first) if day is not None)
        if last is not None and begin <= last:
            days.append(begin)
    return min(days, default=default)


def _to_date_python(account_id: int, from_days: Mapping[str, dt.date], fresh: bool) -> None:
    """The same as _to_date_sql, pair by pair (SQLite: tests and the demo, small accounts)."""
    campaigns = list(from_days)
    stored = {} if fresh else {(t.meta_campaign_id, t.currency): t
                               for t in CampaignTotal.objects.filter(account_id=account_id, meta_campaign_id__in=campaigns)}
    cells: dict[Pair, dict[dt.date, dict]] = defaultdict(dict)
    for row in (CampaignDay.objects.filter(account_id=account_id, meta_campaign_id__in=campaigns, day__gte=min(from_days.values()))
                .values("meta_campaign_id", "currency", "day", *MEASURES)):
        if row["day"] >= from_days[row["meta_campaign_id"]]:
            cells[(row["meta_campaign_id"], row["currency"])][row["day"]] = row
    if fresh:
        CampaignToDate.objects.filter(account_id=account_id, meta_campaign_id__in=campaigns).delete()
        CampaignTotal.objects.filter(account_id=account_id, meta_campaign_id__in=campaigns).delete()
    rows, totals = [], []
    for pair in sorted(set(stored) | set(cells)):
        from_day, total, own = from_days[pair[0]], stored.get(pair), cells.get(pair, {})
        first = min([*own, *([total.first_day] if total else [])])
        last = max([*own, *([total.last_day] if total else [])])
        running, start = dict.fromkeys(MEASURES, 0), from_day
        scope = CampaignToDate.objects.filter(account_id=account_id, meta_campaign_id=pair[0], currency=pair[1])
        if total is not None and from_day > total.last_day:  # on top of the stored total, filling the gap
            running, start = {m: getattr(total, m) for m in MEASURES}, min(from_day, total.last_day + dt.timedelta(days=1))
        elif total is not None and from_day > total.first_day:  # on top of the day before
            running = scope.filter(day=from_day - dt.timedelta(days=1)).values(*MEASURES).get()
        scope.filter(day__gte=start).delete()
        day = max(start, first)
        while day <= last:
            for m in MEASURES:
                running[m] += own.get(day, {}).get(m) or 0
            rows.append(CampaignToDate(account_id=account_id, day=day, meta_campaign_id=pair[0], currency=pair[1], **running))
            day += dt.timedelta(days=1)
        totals.append(CampaignTotal(account_id=account_id, meta_campaign_id=pair[0], currency=pair[1], first_day=first,
                                    last_day=last, **running))
    CampaignToDate.objects.bulk_create(rows, batch_size=2000)
    CampaignTotal.objects.bulk_create(totals, batch_size=2000, update_conflicts=True,
                                      unique_fields=["account", "meta_campaign_id", "currency"],
                                      update_fields=["first_day", "last_day", *MEASURES])
    for total in totals:  # a pair with nothing left (its figures moved or went) leaves
        if _zero({m: getattr(total, m) for m in MEASURES}):
            pair = {"meta_campaign_id": total.meta_campaign_id, "currency": total.currency}
            CampaignTotal.objects.filter(account_id=account_id, **pair).delete()
            CampaignToDate.objects.filter(account_id=account_id, **pair).delete()


# -- after a CampaignDay write ------------------------------------------------------------------------------
def derive(account_id: int, cells: Iterable[tuple[dt.date, str]]) -> None:
    """Bring AccountDay and the running totals in line with CampaignDay after these (day, campaign) cells
    (any currency) may have changed."""
    days: set[dt.date] = set()
    from_days: dict[str, dt.date] = {}
    for day, campaign in cells:
        days.add(day)
        from_days[campaign] = min(day, from_days.get(campaign, day))
    refresh_account_days(account_id, days)
    refresh_to_date(account_id, from_days)


# -- RepeatSale ----------------------------------------------------------------------------------------------
def _completed_meta_sales(account_id: int):
    return Sale.objects.filter(account_id=account_id, status=Sale.Status.COMPLETED, lead_source__in=Lead.META_SOURCES)


def leads_with_sales_within(account_id: int, moments: Iterable[tuple[dt.datetime, dt.datetime]]) -> set[int]:
    """The leads whose repeat sales may change when sales closed in these [start, end) ranges changed: those with
    a completed Meta sale there now, and those with a RepeatSale row that points there."""
    closed, stored = Q(), Q()
    for start, end in moments:
        closed |= Q(closed_at__gte=start, closed_at__lt=end)
        stored |= (Q(closed_at__gte=start, closed_at__lt=end) | Q(previous_closed_at__gte=start, previous_closed_at__lt=end)
                   | Q(previous_in_campaign_closed_at__gte=start, previous_in_campaign_closed_at__lt=end))
    if not closed:
        return set()
    leads = set(_completed_meta_sales(account_id).filter(closed).values_list("lead_id", flat=True))
    return leads | set(RepeatSale.objects.filter(account_id=account_id).filter(stored).values_list("lead_id", flat=True))


REPEAT_FIELDS = ("lead_id", "meta_campaign_id", "closed_at", "previous_closed_at", "previous_in_campaign_closed_at")


def computed_repeats(account_id: int, lead_ids: Iterable[int]) -> dict[int, dict]:
    """The RepeatSale rows these leads' completed Meta sales make, by sale id (what refresh_repeats writes)."""
    computed: dict[int, dict] = {}
    last_of_lead: dict[int, dt.datetime] = {}
    last_in_campaign: dict[tuple[int, str], dt.datetime] = {}
    sales = (_completed_meta_sales(account_id).filter(lead_id__in=list(lead_ids)).order_by("lead_id", "closed_at", "id")
             .values_list("id", "lead_id", "meta_campaign_id", "closed_at"))
    for sale_id, lead_id, campaign, closed_at in sales:
        previous, in_campaign = last_of_lead.get(lead_id), last_in_campaign.get((lead_id, campaign))
        if previous is not None:
            computed[sale_id] = {"lead_id": lead_id, "meta_campaign_id": campaign, "closed_at": closed_at,
                                 "previous_closed_at": previous, "previous_in_campaign_closed_at": in_campaign}
        last_of_lead[lead_id], last_in_campaign[(lead_id, campaign)] = closed_at, closed_at
    return computed


def stored_repeats(account_id: int, lead_ids: Iterable[int]) -> dict[int, dict]:
    """The RepeatSale rows of these leads as stored, by sale id."""
    return {r["sale_id"]: {f: r[f] for f in REPEAT_FIELDS}
            for r in RepeatSale.objects.filter(account_id=account_id, lead_id__in=list(lead_ids)).values("sale_id", *REPEAT_FIELDS)}


def refresh_repeats(account_id: int, lead_ids: Iterable[int]) -> int:
    """Make the RepeatSale rows of these leads equal what their completed Meta sales say; returns rows written."""
    written = 0
    fields = REPEAT_FIELDS
    for batch in _batches(sorted(set(lead_ids)), 2000):
        computed = computed_repeats(account_id, batch)
        current = stored_repeats(account_id, batch)
        changed = [RepeatSale(account_id=account_id, sale_id=sale_id, **values)
                   for sale_id, values in computed.items() if current.get(sale_id) != values]
        gone = [sale_id for sale_id in current if sale_id not in computed]
        if changed:
            RepeatSale.objects.bulk_create(changed, update_conflicts=True, unique_fields=["account", "sale_id"],
                                           update_fields=list(fields))
        if gone:
            RepeatSale.objects.filter(account_id=account_id, sale_id__in=gone).delete()
        written += len(changed) + len(gone)
    return written

