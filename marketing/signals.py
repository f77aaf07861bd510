"""Marking the ROI rollup cells of every saved or deleted CRM row and insight (connected in ready()).

Why model signals and not only the core's domain events: the rollup is derived data and must follow
every write, whatever path made it. Services publish events, but Django admin (its change forms
and the opportunity inline of the lead page), the shell, data fixes and tests save rows directly;
signals see them all, and they run in the writer's transaction: the cells a change touched are
marked (``rollup_marks.mark_dirty``, one plain insert, no lock) in the transaction that commits the
change, and a worker folds them (marketing.services.rollup_marks). What they cannot see is handled
where it happens: bulk writes (the insights upsert marks its cells itself; a service's bulk_create sends
``bulk_created``, marked below like a save per row; bulk loads publish ``crm_bulk_loaded``, answered
with a rebuild below) and queryset.update() (the writer calls
``rollup_marks.mark_dirty``; the nightly rebuild re-derives the last 35 days, and every day of a sale
whose attribution copy it repairs).

Only changes to the fields a cell depends on trigger work (``TRACKED``): a lead's status or an
opportunity's stage moves nothing. A mark that cannot be written fails the write with it: a
committed change always has its mark.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save, pre_save
from django.utils import timezone

from crm_marketing import events
from crm_marketing.models import Account, Lead, Opportunity, Sale, bulk_created
from marketing.models import AdAccount, DailyInsight
from marketing.services import rollup_marks, rollups


# The attributes a rollup cell depends on, per model.
TRACKED: dict[type, tuple[str, ...]] = {
    Lead: ("account_id", "created_at", "lead_source", "meta_campaign_id"),
    Opportunity: ("account_id", "created_at", "lead_id"),
    # lead_id: no cell moves when a sale changes lead within a campaign and day, but the distinct customers do,
    # and the stats cache (marketing/services/stats_cache.py) learns of changes through the rollup's writers.
    Sale: ("account_id", "closed_at", "status", "amount", "currency", "lead_source", "meta_campaign_id", "lead_id"),
    DailyInsight: ("account_id", "date", "meta_campaign_id", "currency", "spend", "impressions", "clicks"),
}
REBUILD_TASK = "marketing.tasks.rebuild_roi_rollups"


def _values(instance, model: type) -> dict[str, Any]:
    """The tracked attributes as the database reads them back: a model accepts "2025-03-01T10:00:00Z" or
    "10.00" and converts only when writing, while the instance keeps the string."""
    values = {}
    for name in TRACKED[model]:
        value = getattr(instance, name)
        if isinstance(value, str):
            value = model._meta.get_field(name).to_python(value)
        values[name] = value
    return values


def _remember(sender, instance, raw: bool = False, update_fields=None, **kwargs) -> None:
    """pre_save: the stored values of an existing row, to find the cells it leaves."""
    instance._rollup_before = None
    if raw or instance._state.adding or instance.pk is None:
        return
    attnames = TRACKED[sender]
    if update_fields is not None and not {sender._meta.get_field(name).attname for name in update_fields} & set(attnames):
        instance._rollup_before = _values(instance, sender)  # nothing tracked is written: unchanged
        return
    instance._rollup_before = sender.objects.filter(pk=instance.pk).values(*attnames).first()


class _Touched:
    """The cells one change touches: account days (CRM columns) and (day, campaign) pairs (Meta columns)."""

    def __init__(self) -> None:
        self.days: dict[int, set[dt.date]] = defaultdict(set)
        self.cells: dict[int, set[tuple[dt.date, str]]] = defaultdict(set)
        self._zones: dict[int, ZoneInfo | None] = {}

    def day(self, account_id: int, moment: dt.datetime | None) -> None:
        if moment is None:
            return
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        if account_id not in self._zones:
            name = Account.objects.filter(pk=account_id).values_list("timezone", flat=True).first()
            self._zones[account_id] = ZoneInfo(name) if name else None
        if self._zones[account_id] is not None:
            self.days[account_id].add(moment.astimezone(self._zones[account_id]).date())

    def mark(self) -> None:
        for account_id in sorted(self.days.keys() | self.cells.keys()):
            rollup_marks.mark_dirty(account_id, days=self.days.get(account_id, ()), meta_cells=self.cells.get(account_id, ()))


def _lead(touched: _Touched, lead_id: int, before: dict | None, after: dict | None) -> None:
    meta = [v for v in (before, after) if v and v["lead_source"] in Lead.META_SOURCES]
    for values in meta:
        touched.day(values["account_id"], values["created_at"])
    attribution = ("lead_source", "meta_campaign_id")
    if meta and before and after and any(before[k] != after[k] for k in attribution):
        # Its opportunities and sales move with it (sales already carry the new copy: Lead.save).
        account_id = after["account_id"]
        for moment in Opportunity.objects.filter(lead_id=lead_id).values_list("created_at", flat=True):
            touched.day(account_id, moment)
        for moment in Sale.objects.filter(lead_id=lead_id).values_list("closed_at", flat=True):
            touched.day(account_id, moment)


def _opportunity(touched: _Touched, before: dict | None, after: dict | None, lead_ids: set[int]) -> None:
    if not Lead.objects.filter(pk__in=lead_ids, lead_source__in=Lead.META_SOURCES).exists():
        return
    for values in (before, after):
        if values:
            touched.day(values["account_id"], values["created_at"])


def _sale(touched: _Touched, before: dict | None, after: dict | None) -> None:
    for values in (before, after):
        if values and values["status"] == Sale.Status.COMPLETED and values["lead_source"] in Lead.META_SOURCES:
            touched.day(values["account_id"], values["closed_at"])


def _insight(touched: _Touched, before: dict | None, after: dict | None) -> None:
    for values in (before, after):
        if values:
            touched.cells[values["account_id"]].add((values["date"], values["meta_campaign_id"]))


def _changed(sender, instance, before: dict | None, after: dict | None) -> None:
    if before == after:
        return
    touched = _Touched()
    _touch(touched, sender, instance, before, after)
    touched.mark()


def _touch(touched: _Touched, sender, instance, before: dict | None, after: dict | None) -> None:
    if sender is Lead:
        _lead(touched, instance.pk, before, after)
    elif sender is Opportunity:
        _opportunity(touched, before, after, {v["lead_id"] for v in (before, after) if v})
    elif sender is Sale:
        _sale(touched, before, after)
    else:
        _insight(touched, before, after)


def _bulk_created(sender, instances, **kwargs) -> None:
    """crm_marketing.models.bulk_created: the new rows' cells, marked with one insert per account."""
    if sender not in TRACKED:
        return
    touched = _Touched()
    for instance in instances:
        _touch(touched, sender, instance, None, _values(instance, sender))
    touched.mark()


def _saved(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    if raw:
        return
    _changed(sender, instance, None if created else getattr(instance, "_rollup_before", None), _values(instance, sender))


def _account_goes(origin) -> bool:
    """True when the delete started at an Account: its rollup rows go with it."""
    return isinstance(origin, Account) or (isinstance(origin, QuerySet) and origin.model is Account)


def _deleted(sender, instance, origin=None, **kwargs) -> None:
    if not _account_goes(origin):
        _changed(sender, instance, _values(instance, sender), None)


# -- whole-account rebuilds ----------------------------------------------------------------------------------
def queue_rebuild(account_id: int) -> None:
    """Rebuild the account's rollup in a worker once the current transaction commits."""
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task(REBUILD_TASK, account_id), robust=True)


def _account_saving(sender, instance: Account, raw: bool = False, **kwargs) -> None:
    instance._rollup_timezone = None
    if not raw and instance.pk is not None and not instance._state.adding:
        instance._rollup_timezone = Account.objects.filter(pk=instance.pk).values_list("timezone", flat=True).first()


def _account_saved(sender, instance: Account, created: bool, raw: bool = False, **kwargs) -> None:
    """A new timezone moves every CRM figure to other days."""
    before = getattr(instance, "_rollup_timezone", None)
    if not raw and not created and before is not None and before != instance.timezone:
        queue_rebuild(instance.pk)


def _ad_account_deleted(sender, instance: AdAccount, origin=None, **kwargs) -> None:
    """Its insights went with it (a cascade without signals): re-derive the account's Meta figures."""
    if not _account_goes(origin):
        queue_rebuild(instance.account_id)


def _bulk_loaded(event: events.DomainEvent) -> None:
    """crm_bulk_loaded: rows arrived without signals (bulk_create, COPY); runs after their commit."""
    account = Account.objects.filter(pk=event.account_id).first()
    if account is not None:
        rollups.rebuild(account)


def connect() -> None:
    for model in TRACKED:
        uid = f"marketing.rollups.{model._meta.label_lower}"
        pre_save.connect(_remember, sender=model, dispatch_uid=uid)
        post_save.connect(_saved, sender=model, dispatch_uid=uid)
        if model is not DailyInsight:  # insights are never deleted one by one; a receiver would slow cascades
            post_delete.connect(_deleted, sender=model, dispatch_uid=uid)
    bulk_created.connect(_bulk_created, dispatch_uid="marketing.rollups.bulk_created")
    pre_save.connect(_account_saving, sender=Account, dispatch_uid="marketing.rollups.account")
    post_save.connect(_account_saved, sender=Account, dispatch_uid="marketing.rollups.account")
    post_delete.connect(_ad_account_deleted, sender=AdAccount, dispatch_uid="marketing.rollups.adaccount")
    events.subscribe(events.CRM_BULK_LOADED, _bulk_loaded)
