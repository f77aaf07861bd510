"""The stats include writes the rollup has not folded yet: marked cells are recomputed from the rows.

A write marks the rollup cells it touched and a worker re-derives them a moment later
(marketing.services.rollup_marks). Until then a read adds, for every marked cell of its windows, the
difference between the cell recomputed from the source rows (``rollups.derive_crm_days`` /
``derive_meta_cells``, the functions the fold's refresh uses) and the cell as stored. So every figure
counts every committed write, folded or not; the cost is one indexed query on the marks when nothing
is pending, and a recomputation of the marked days when something is (a burst of leads marks today
only).

The marks, the rollup and the source rows must be read as of one moment: a fold committing between two
reads would otherwise count a write twice or not at all. ``one_snapshot`` runs the read in one
REPEATABLE READ transaction on PostgreSQL. On SQLite (the embedded demo) the statements run one by
one: every transaction there is opened ``IMMEDIATE`` (it takes the write lock), so a read in one
would queue behind every writer; a fold committing in the middle of one read can put that one
read's figure off by the cells it folded, and the next read is exact again.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from typing import Iterator
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Q

from crm_marketing.models import Account
from marketing.models import CampaignDay, RollupDirtyCell
from marketing.services import coarse_rollups, rollups
from marketing.time_ranges import Window

ZERO = Decimal("0")


@contextmanager
def one_snapshot() -> Iterator[None]:
    """Every statement inside reads the same committed state (a caller's open transaction keeps its own)."""
    if connection.in_atomic_block or connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def pending_corrections(account: Account, span: Window, campaign_id: str | None) -> tuple[dict[tuple, dict], set[date]]:
    """Per marked cell (day, campaign, currency) of the span: recomputed minus stored, per measure (what
    ``figures.collect`` adds to the figures it read from the rollups), and the span's marked CRM days.

    Cells that recompute to what is stored are left out. ``campaign_id`` keeps that campaign's cells only."""
    account_id = account.pk
    marks = RollupDirtyCell.objects.filter(account_id=account_id, day__gte=span.since, day__lte=span.until)
    if campaign_id is not None:
        marks = marks.filter(Q(kind=RollupDirtyCell.Kind.CRM) | Q(meta_campaign_id=campaign_id))
    days, cells = set(), set()
    for kind, day, campaign in marks.order_by().values_list("kind", "day", "meta_campaign_id").distinct():
        if kind == RollupDirtyCell.Kind.CRM:
            days.add(day)
        else:
            cells.add((day, campaign))
    if not days and not cells:
        return {}, days
    corrections: dict[tuple, dict[str, Decimal | int]] = {}

    def correct(stored: dict, fresh: rollups.Sums, measures: tuple[str, ...]) -> None:
        for cell in stored.keys() | fresh.keys():
            if campaign_id is not None and cell[1] != campaign_id:
                continue
            difference = {m: (fresh.get(cell, {}).get(m) or 0) - (stored.get(cell, {}).get(m) or 0) for m in measures}
            if any(difference.values()):
                corrections.setdefault(cell, {}).update(difference)

    if days:
        rows = CampaignDay.objects.filter(account_id=account_id, day__in=days)
        if campaign_id is not None:
            rows = rows.filter(meta_campaign_id=campaign_id)
        correct(_stored(rows, CampaignDay.CRM_MEASURES), rollups.derive_crm_days(account, days, campaign_id),
                CampaignDay.CRM_MEASURES)
    if cells:
        rows = CampaignDay.objects.filter(account_id=account_id, day__in={d for d, _ in cells},
                                          meta_campaign_id__in={c for _, c in cells})
        stored = {cell: sums for cell, sums in _stored(rows, CampaignDay.META_MEASURES).items() if cell[:2] in cells}
        correct(stored, rollups.derive_meta_cells(account_id, cells), CampaignDay.META_MEASURES)
    return corrections, days


def repeat_changes(account: Account, days: set[date]) -> tuple[list[dict], list[dict]]:
    """The repeat sales (RepeatSale-like rows) that the sales of these marked days make now and the stored ones
    they replace, only those that differ: customers = sales - repeats, so the read adds the first and takes
    back the second. The leads are the ones with a sale on those days or a stored repeat pointing there."""
    tz = ZoneInfo(account.timezone)
    leads = coarse_rollups.leads_with_sales_within(account.pk, [run.bounds(tz) for run in rollups.day_runs(days)])
    if not leads:
        return [], []
    fresh, stored = coarse_rollups.computed_repeats(account.pk, leads), coarse_rollups.stored_repeats(account.pk, leads)
    return ([row for sale, row in fresh.items() if stored.get(sale) != row],
            [row for sale, row in stored.items() if fresh.get(sale) != row])


def _stored(rows, measures: tuple[str, ...]) -> rollups.Sums:
    return {(r["day"], r["meta_campaign_id"], r["currency"]): {m: r[m] for m in measures}
            for r in rows.values("day", "meta_campaign_id", "currency", *measures)}
