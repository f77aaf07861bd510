"""Writing daily insight rows: an upsert on (ad_account, meta_ad_id, date), so restated days overwrite.

Rows travel as plain tuples in `COLUMNS` order (no model instances on the hot path). On PostgreSQL
they are COPYed (binary) into a session temp table and merged with one INSERT ... ON CONFLICT DO
UPDATE; elsewhere (SQLite) `bulk_create(update_conflicts=True)` does the same in batches.
Why not bulk_create everywhere: on the 2-core bench machine it upserts ~10,000 rows/s on PostgreSQL
(Django prepares every value in Python) while COPY + merge does several times that (bench/sync.py
prints both).

In the same transaction, the ROI rollup cells (account, day, campaign) the rows touch are marked
(marketing.services.rollup_marks; on PostgreSQL with one INSERT ... SELECT from the temp table) and a
worker re-derives their Meta columns once the upsert commits: no rollup lock is taken here.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from operator import itemgetter
from typing import Sequence

from django.db import connection, transaction
from django.utils import timezone

from marketing.models import DailyInsight, RollupDirtyCell
from marketing.services import rollup_marks

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
            _mark_rollup_from_temp()
            for account_id in account_ids:
                rollup_marks.queue_fold(account_id)
        else:
            bulk_upsert(rows, batch_size=batch_size)
            day, campaign = COLUMNS.index("date"), COLUMNS.index("meta_campaign_id")
            for account_id in account_ids:
                rollup_marks.mark_dirty(account_id, meta_cells={(row[day], row[campaign]) for row in rows if row[0] == account_id})
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


def _mark_rollup_from_temp() -> None:
    """Mark the rollup cells of the merged rows (rollup_marks.mark_dirty's rows, written in one statement)."""
    marks = connection.ops.quote_name(RollupDirtyCell._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {marks} (account_id, kind, day, meta_campaign_id, marked_at) "
            f"SELECT DISTINCT account_id, %s, date, meta_campaign_id, %s::timestamptz FROM {TEMP_TABLE}",
            [RollupDirtyCell.Kind.META.value, timezone.now()])
