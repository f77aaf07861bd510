"""Writing daily insight rows: an upsert on (ad_account, meta_ad_id, date), so restated days overwrite.

Rows travel as plain tuples in `COLUMNS` order (no model instances on the hot path). On PostgreSQL
they are COPYed (binary) into a session temp table and merged with one INSERT ... ON CONFLICT DO
UPDATE; elsewhere (SQLite) `bulk_create(update_conflicts=True)` does the same in batches.
Why not bulk_create everywhere: on the 2-core bench machine it upserts ~10,000 rows/s on PostgreSQL
(Django prepares every value in Python) while COPY + merge does several times that (bench/sync.py
prints both).

In the same transaction, the Meta columns of the ROI rollup cells (account, day, campaign) the rows
touch are recomputed from the stored insights (marketing.services.rollups); on PostgreSQL with one
INSERT ... SELECT ... ON CONFLICT from the temp table, then the coarser rollups of those cells
(marketing.services.coarse_rollups.derive).
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from operator import itemgetter
from typing import Sequence

from django.db import connection, transaction

from marketing.models import CampaignDay, DailyInsight
from marketing.services import coarse_rollups, rollups

COLUMNS = ("account_id", "ad_account_id", "meta_campaign_id", "meta_adset_id", "meta_ad_id", "date", "currency",
           "spend", "impressions", "clicks", "link_clicks", "reach", "leads", "synced_at")
UNIQUE = ("ad_account_id", "meta_ad_id", "date")
UPDATED = ("meta_campaign_id", "meta_adset_id", "currency", "spend", "impressions", "clicks", "link_clicks", "reach",
           "leads", "synced_at")
PG_TYPES = ("bigint", "bigint", "text", "text", "text", "date", "text", "numeric", "bigint", "bigint", "bigint",
            "bigint", "integer", "timestamptz")
BATCH_SIZE = 2000
TEMP_TABLE = "marketing_insight_upsert"
InsightValues = tuple[int, int, str, str, str, dt.date, str, Decimal, int, int, int, int, int, dt.datetime]
_KEY = itemgetter(*(COLUMNS.index(name) for name in UNIQUE))


def _deduplicated(rows: Sequence[InsightValues]) -> list[InsightValues]:
    """Last row wins per key: one statement may not update the same row twice (PostgreSQL refuses)."""
    return list(dict(zip(map(_KEY, rows), rows)).values())


def upsert_insights(rows: Sequence[InsightValues], *, batch_size: int = BATCH_SIZE) -> int:
    """Insert or overwrite the rows; returns how many distinct (ad account, ad, day) rows were written."""
    rows = _deduplicated(rows)
    if not rows:
        return 0
    account_ids = sorted({row[0] for row in rows})
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _copy_and_merge(rows)
            for account_id in account_ids:  # in order: two upserts never wait on each other crosswise
                rollups.lock_account(account_id)
            cells = _touched_cells()
            _refresh_rollup_from_temp(cells)
            for account_id, account_cells in cells.items():
                coarse_rollups.derive(account_id, account_cells)
        else:
            bulk_upsert(rows, batch_size=batch_size)
            day, campaign = COLUMNS.index("date"), COLUMNS.index("meta_campaign_id")
            for account_id in account_ids:
                rollups.refresh_meta_cells(account_id, {(row[day], row[campaign]) for row in rows if row[0] == account_id})
    return len(rows)


def bulk_upsert(rows: Sequence[InsightValues], *, batch_size: int = BATCH_SIZE) -> None:
    """The portable path: bulk_create(update_conflicts=True) in batches."""
    objects = [DailyInsight(**dict(zip(COLUMNS, row))) for row in rows]
    for start in range(0, len(objects), batch_size):
        DailyInsight.objects.bulk_create(
            objects[start:start + batch_size], update_conflicts=True,
            unique_fields=["ad_account", "meta_ad_id", "date"], update_fields=list(UPDATED))


def _copy_and_merge(rows: Sequence[InsightValues]) -> None:
    table = connection.ops.quote_name(DailyInsight._meta.db_table)
    columns = ", ".join(COLUMNS)
    with connection.cursor() as cursor:
        # Per session, emptied at commit; TRUNCATE covers two calls inside one outer transaction.
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {TEMP_TABLE} "
                       f"({', '.join(f'{c} {t}' for c, t in zip(COLUMNS, PG_TYPES))}) ON COMMIT DELETE ROWS")
        cursor.execute(f"TRUNCATE {TEMP_TABLE}")
        raw = cursor.cursor  # psycopg 3 under Django's wrapper
        with raw.copy(f"COPY {TEMP_TABLE} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(PG_TYPES)
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {TEMP_TABLE} "
            f"ON CONFLICT ({', '.join(UNIQUE)}) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in UPDATED)}")


def _refresh_rollup_from_temp(cells: dict[int, list[tuple[dt.date, str]]]) -> None:
    """Recompute spend, impressions and clicks of the rollup cells of the merged rows (the caller holds
    the accounts' rollup locks); rows left with no figure at all are dropped.

    The insights are read through ``insight_account_date`` over the days the rows span: without that range
    (the temp table has no statistics) PostgreSQL may scan the whole table, which grows with history. A
    sort or hash of a sync's rows fits in 32 MB of work memory for the rest of the transaction."""
    rollup = connection.ops.quote_name(CampaignDay._meta.db_table)
    insights = connection.ops.quote_name(DailyInsight._meta.db_table)
    touched = f"(SELECT DISTINCT account_id, date, meta_campaign_id FROM {TEMP_TABLE})"
    days = [day for account_cells in cells.values() for day, _ in account_cells]
    span = {"accounts": list(cells), "first": min(days), "last": max(days)}
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '32MB'")
        cursor.execute(
            f"INSERT INTO {rollup} AS c (account_id, day, meta_campaign_id, currency, spend, impressions, clicks, "
            f"leads, opportunities, revenue, sales) "
            f"SELECT i.account_id, i.date, i.meta_campaign_id, i.currency, SUM(i.spend), SUM(i.impressions), SUM(i.clicks), 0, 0, 0, 0 "
            f"FROM {insights} i JOIN {touched} t "
            f"ON i.account_id = t.account_id AND i.date = t.date AND i.meta_campaign_id = t.meta_campaign_id "
            f"WHERE i.account_id = ANY(%(accounts)s) AND i.date BETWEEN %(first)s AND %(last)s "
            f"GROUP BY i.account_id, i.date, i.meta_campaign_id, i.currency "
            f"ON CONFLICT (account_id, day, meta_campaign_id, currency) DO UPDATE SET spend = EXCLUDED.spend, "
            f"impressions = EXCLUDED.impressions, clicks = EXCLUDED.clicks "
            f"WHERE (c.spend, c.impressions, c.clicks) IS DISTINCT FROM (EXCLUDED.spend, EXCLUDED.impressions, EXCLUDED.clicks)",
            span)
        cursor.execute(
            f"DELETE FROM {rollup} c USING {touched} t "
            f"WHERE c.account_id = t.account_id AND c.day = t.date AND c.meta_campaign_id = t.meta_campaign_id "
            f"AND c.account_id = ANY(%(accounts)s) AND c.day BETWEEN %(first)s AND %(last)s "
            f"AND c.spend = 0 AND c.impressions = 0 AND c.clicks = 0 AND c.leads = 0 AND c.opportunities = 0 AND c.revenue = 0 "
            f"AND c.sales = 0", span)


def _touched_cells() -> dict[int, list[tuple[dt.date, str]]]:
    """The (day, campaign) cells of the merged rows, per account."""
    cells: dict[int, list[tuple[dt.date, str]]] = {}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT account_id, date, meta_campaign_id FROM {TEMP_TABLE}")
        for account_id, day, campaign in cursor.fetchall():
            cells.setdefault(account_id, []).append((day, campaign))
    return cells
