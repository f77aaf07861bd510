"""The ROI figures of one account over windows of days: plain aggregation over four tables.

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

Several windows are read in one scan each (conditional aggregates), so the stats endpoint pays
one pass per table for the period and its previous period.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal, Sequence
from zoneinfo import ZoneInfo

from django.db.models import Count, F, Min, Q, Sum
from django.db.models.functions import TruncDate

from crm_marketing.models import Account, Lead, Opportunity, Sale
from marketing.models import DailyInsight, ExchangeRate
from marketing.time_ranges import Window

ZERO = Decimal("0")
HUNDRED = Decimal("100")
Key = Literal["total", "campaign", "day"]
TOTAL = "total"


def ratio(numerator: Decimal | int, divisor: Decimal | int, scale: Decimal | int = 1) -> Decimal | None:
    """numerator / divisor * scale, or None when the divisor is 0 (undefined, never infinite)."""
    if not divisor:
        return None
    return Decimal(numerator) / Decimal(divisor) * scale


def change(current: Decimal | int, previous: Decimal | int) -> Decimal | None:
    """Percentage change vs the previous period; None when the previous figure is 0."""
    if not previous:
        return None
    return (Decimal(current) - Decimal(previous)) / Decimal(previous) * HUNDRED


@dataclass
class Figures:
    leads: int = 0
    opportunities: int = 0
    revenue: Decimal = ZERO
    customers: int = 0
    spend: Decimal = ZERO
    impressions: int = 0
    clicks: int = 0

    @property
    def roi(self) -> Decimal | None:
        """(revenue - spend) / spend * 100."""
        return ratio(self.revenue - self.spend, self.spend, HUNDRED)

    @property
    def cpa(self) -> Decimal | None:
        return ratio(self.spend, self.customers)

    @property
    def cost_per_lead(self) -> Decimal | None:
        return ratio(self.spend, self.leads)

    @property
    def cpc(self) -> Decimal | None:
        return ratio(self.spend, self.clicks)

    @property
    def cpm(self) -> Decimal | None:
        return ratio(self.spend, self.impressions, 1000)

    @property
    def ctr(self) -> Decimal | None:
        return ratio(self.clicks, self.impressions, HUNDRED)

    def add(self, other: "Figures") -> None:
        for name in ("leads", "opportunities", "revenue", "customers", "spend", "impressions", "clicks"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Converter:
    """Converts amounts into the account's currency with its ExchangeRate rows (from -> to).

    Amounts in a currency without a rate are left out of the sums and remembered in
    ``missing``; the endpoints answer ``currency_mismatch: true`` with those currencies.
    """

    target: str
    rates: dict[str, Decimal]
    missing: set[str] = field(default_factory=set)

    @classmethod
    def for_account(cls, account: Account) -> "Converter":
        rows = ExchangeRate.objects.filter(account=account, to_currency=account.currency).values_list("from_currency", "rate")
        return cls(target=account.currency, rates={code: Decimal(rate) for code, rate in rows})

    def convert(self, currency: str, amount: Decimal | None) -> Decimal:
        amount = Decimal(amount or 0)
        if currency == self.target:
            return amount
        rate = self.rates.get(currency)
        if rate is None:
            self.missing.add(currency)
            return ZERO
        return amount * rate


@dataclass(frozen=True)
class Scope:
    """Whose figures: the account, its timezone and currency, optionally one campaign."""

    account: Account
    converter: Converter
    campaign_id: str | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.account.timezone)


def _within(field_name: str, window: Window, tz: ZoneInfo) -> Q:
    if field_name == "date":
        return Q(date__gte=window.since, date__lte=window.until)
    start, end = window.bounds(tz)
    return Q(**{f"{field_name}__gte": start, f"{field_name}__lt": end})


def _span(windows: Sequence[Window]) -> Window:
    return Window(min(w.since for w in windows), max(w.until for w in windows))


def _rows(queryset, *, time_field: str, windows: Sequence[Window], scope: Scope, key: Key, campaign_path: str,
          extra_group: tuple[str, ...], aggregates: dict) -> list[dict]:
    """One GROUP BY query: ``aggregates`` (name -> (Aggregate, expression, kwargs)) per window.

    Result rows carry ``key`` (the group: campaign id, day or TOTAL), the ``extra_group`` values
    and ``{name}{i}`` for window i.
    """
    tz = scope.tz
    queryset = queryset.filter(account=scope.account).filter(_within(time_field, _span(windows), tz))
    if scope.campaign_id is not None:
        queryset = queryset.filter(**{campaign_path: scope.campaign_id})
    annotations = {
        f"{name}{i}": aggregate(expression, filter=_within(time_field, window, tz), **kwargs) if len(windows) > 1 else aggregate(expression, **kwargs)
        for name, (aggregate, expression, kwargs) in aggregates.items()
        for i, window in enumerate(windows)
    }
    group: dict = {}
    if key == "campaign":
        group["key"] = F(campaign_path)
    elif key == "day":
        group["key"] = F(time_field) if time_field == "date" else TruncDate(time_field, tzinfo=tz)
    if not group and not extra_group:
        return [{"key": TOTAL, **queryset.aggregate(**annotations)}]
    rows = list(queryset.order_by().values(*extra_group, **group).annotate(**annotations))
    if not group:
        for row in rows:
            row["key"] = TOTAL
    return rows


def collect(scope: Scope, windows: Sequence[Window], key: Key = TOTAL) -> list[dict[str, Figures] | dict[date, Figures]]:
    """Figures per window, each a dict from the group key (TOTAL, campaign id or day) to Figures."""
    result: list[dict] = [defaultdict(Figures) for _ in windows]
    meta = Q(lead_source__in=Lead.META_SOURCES)
    # The lead's account too: the same tenant by construction, and it lets the join use the lead indexes.
    meta_lead = Q(lead__lead_source__in=Lead.META_SOURCES, lead__account=scope.account)
    convert = scope.converter.convert

    common = {"windows": windows, "scope": scope, "key": key}
    # COUNT(created_at), not COUNT(id): the (account, lead_source, created_at) index answers it alone.
    for row in _rows(Lead.objects.filter(meta), time_field="created_at", campaign_path="meta_campaign_id", extra_group=(),
                     aggregates={"n": (Count, "created_at", {})}, **common):
        for i in range(len(windows)):
            result[i][row["key"]].leads += row[f"n{i}"] or 0
    for row in _rows(Opportunity.objects.filter(meta_lead), time_field="created_at", campaign_path="lead__meta_campaign_id",
                     extra_group=(), aggregates={"n": (Count, "id", {})}, **common):
        for i in range(len(windows)):
            result[i][row["key"]].opportunities += row[f"n{i}"] or 0
    sales = Sale.objects.filter(meta_lead, status=Sale.Status.COMPLETED)
    for row in _rows(sales, time_field="closed_at", campaign_path="lead__meta_campaign_id", extra_group=("currency",),
                     aggregates={"amount": (Sum, "amount", {})}, **common):
        for i in range(len(windows)):
            if row[f"amount{i}"] is not None:
                result[i][row["key"]].revenue += convert(row["currency"], row[f"amount{i}"])
    for row in _rows(sales, time_field="closed_at", campaign_path="lead__meta_campaign_id", extra_group=(),
                     aggregates={"n": (Count, "lead_id", {"distinct": True})}, **common):
        for i in range(len(windows)):
            result[i][row["key"]].customers += row[f"n{i}"] or 0
    for row in _rows(DailyInsight.objects.all(), time_field="date", campaign_path="meta_campaign_id", extra_group=("currency",),
                     aggregates={"spend": (Sum, "spend", {}), "impressions": (Sum, "impressions", {}), "clicks": (Sum, "clicks", {})},
                     **common):
        for i in range(len(windows)):
            figures = result[i][row["key"]]
            if row[f"spend{i}"] is not None:
                figures.spend += convert(row["currency"], row[f"spend{i}"])
            figures.impressions += row[f"impressions{i}"] or 0
            figures.clicks += row[f"clicks{i}"] or 0
    return result


def earliest_day(account: Account) -> date | None:
    """The account's first day with a lead, an insight or a sale (account timezone), for ``lifetime``."""
    tz = ZoneInfo(account.timezone)
    days = []
    first_lead = Lead.objects.filter(account=account).aggregate(first=Min("created_at"))["first"]
    first_sale = Sale.objects.filter(account=account).aggregate(first=Min("closed_at"))["first"]
    first_insight = DailyInsight.objects.filter(account=account).aggregate(first=Min("date"))["first"]
    for moment in (first_lead, first_sale):
        if moment is not None:
            days.append(moment.astimezone(tz).date())
    if first_insight is not None:
        days.append(first_insight)
    return min(days) if days else None
