"""Writes mark the ROI rollup cells they touch; a worker folds the marks in batches.

A write no longer re-derives its rollup cells in its own transaction (25-45 ms under the account's
rollup lock, which capped one account at about 25 Meta-attributed writes per second). It inserts one
``RollupDirtyCell`` per cell it touched, in its own transaction (a plain insert: no lock, so writers
of one account never wait on each other), and queues a fold of its account once it commits. The fold
(``fold_account``: a django-q2 task, at most one queued per account at a time, plus a sweep every
minute) reads a batch of marks, re-derives their cells with ``rollups.refresh_crm_days`` and
``rollups.refresh_meta_cells`` and deletes exactly the marks it read, in one transaction under the
account's rollup lock. Why no change is lost however a fold and a write interleave:

- a mark the fold read was committed with its write, so the re-derivation (later statements, READ
  COMMITTED) reads that write's rows;
- a write that commits after the read keeps its mark (its own row, not among the ids deleted) for the
  next fold, which the write queued itself;
- two folds of one account run one after the other (the lock); the second finds what is left.

Until its marks are folded, a cell is recomputed from the source rows when read
(marketing.stats.pending): the stats include every committed write.

Writes that bypass the models' save() and delete() (``queryset.update()``, ``bulk_create``, raw SQL)
call ``mark_dirty`` in their transaction: the one documented way to tell the rollup. The signals
(marketing.signals) and the insights upsert (marketing.services.insight_store) mark for the rest.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Iterable

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from marketing.models import RollupDirtyCell
from marketing.services import rollups

log = logging.getLogger("marketing.rollups")

FOLD_TASK = "marketing.tasks.fold_roi_rollup"
FOLD_BATCH = 5000  # marks read, folded and deleted per transaction
FOLD_MAX_BATCHES = 20  # then the task queues its successor and ends (other accounts' folds get a worker)
FOLD_QUEUED_SECONDS = 30  # a queued fold that never ran stops blocking the next one after this long
CRM, META = RollupDirtyCell.Kind.CRM, RollupDirtyCell.Kind.META


def mark_dirty(account_id: int, *, days: Iterable[dt.date] = (), meta_cells: Iterable[tuple[dt.date, str]] = ()) -> int:
    """Mark rollup cells whose source rows the current transaction changed; the fold re-derives them
    once it commits. Call it in the writing transaction, after or before the write. Returns the marks.

    ``days``: account days (the account's timezone) whose leads, opportunities or sales changed (a row's
    old and new day when a date moved); every campaign of the day is re-derived.
    ``meta_cells``: (insight date, meta_campaign_id) pairs whose DailyInsight rows changed."""
    now = timezone.now()
    marks = [RollupDirtyCell(account_id=account_id, kind=CRM, day=day, marked_at=now) for day in set(days)]
    marks += [RollupDirtyCell(account_id=account_id, kind=META, day=day, meta_campaign_id=campaign, marked_at=now)
              for day, campaign in set(meta_cells)]
    if marks:
        RollupDirtyCell.objects.bulk_create(marks, batch_size=2000)
        queue_fold(account_id)
    return len(marks)


# -- queueing ---------------------------------------------------------------------------------------------------
def _queued_key(account_id: int) -> str:
    return f"marketing:roi-rollup-fold-queued:{account_id}"


def queue_fold(account_id: int) -> None:
    """Queue a fold of the account once the current transaction commits, unless one is queued already
    (a burst of writes queues one fold, not one per write). ``robust``: a broker outage never fails the
    write; the sweep folds what no task did."""
    transaction.on_commit(lambda: _queue_now(account_id), robust=True)


def _queue_now(account_id: int) -> None:
    from django_q.tasks import async_task

    key = _queued_key(account_id)
    if not cache.add(key, 1, timeout=FOLD_QUEUED_SECONDS):
        return  # queued and not started yet: it will read this write's marks
    try:
        async_task(FOLD_TASK, account_id, save=False)  # frequent; /readyz's roi_rollup shows what is left
    except Exception:
        cache.delete(key)
        raise


# -- folding ----------------------------------------------------------------------------------------------------
@dataclass
class FoldResult:
    marks: int = 0
    crm_days: int = 0
    meta_cells: int = 0
    rows_written: int = 0
    more_left: bool = False

    def summary(self, account_id: int) -> str:
        left = "; more left, queued again" if self.more_left else ""
        return (f"account {account_id}: {self.marks} mark(s) folded ({self.crm_days} CRM day(s), {self.meta_cells} Meta "
                f"cell(s)), {self.rows_written} rollup row(s) written{left}")


def fold_account(account_id: int, *, batch: int = FOLD_BATCH, max_batches: int = FOLD_MAX_BATCHES) -> FoldResult:
    """Re-derive the account's marked cells and delete the marks folded (see the module docstring)."""
    cache.delete(_queued_key(account_id))  # from now on a write queues the next fold: this one may not see it
    result = FoldResult()
    for _ in range(max_batches):
        with transaction.atomic():
            rollups.lock_account(account_id)
            marks = list(RollupDirtyCell.objects.filter(account_id=account_id).order_by("id")
                         .values_list("id", "kind", "day", "meta_campaign_id")[:batch])
            days = {day for _, kind, day, _ in marks if kind == CRM}
            cells = {(day, campaign) for _, kind, day, campaign in marks if kind == META}
            result.rows_written += rollups.refresh_crm_days(account_id, days) + rollups.refresh_meta_cells(account_id, cells)
            RollupDirtyCell.objects.filter(pk__in=[mark[0] for mark in marks]).delete()
        result.marks += len(marks)
        result.crm_days += len(days)
        result.meta_cells += len(cells)
        if len(marks) < batch:
            return result
    result.more_left = RollupDirtyCell.objects.filter(account_id=account_id).exists()
    if result.more_left:
        queue_fold(account_id)
    return result


def fold_all() -> dict[int, FoldResult]:
    """The sweep: fold every account that has marks (what no queued fold took). One account that fails
    is logged and the others still fold; its marks stay for the next sweep."""
    results: dict[int, FoldResult] = {}
    for account_id in RollupDirtyCell.objects.order_by("account_id").values_list("account_id", flat=True).distinct():
        try:
            results[account_id] = fold_account(account_id)
        except Exception:  # noqa: BLE001 - the next account must fold whatever this one hit
            log.exception("folding the ROI rollup marks of account %s failed", account_id)
    return results
