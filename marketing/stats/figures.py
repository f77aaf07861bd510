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

All but ``customers`` come from ``CampaignDay`` (marketing.services.rollups keeps it equal to those
definitions), one indexed range per request whatever the window, instead of scanning the leads,
opportunities, sales and insights themselves (bench/README.md has the figures). Distinct customers
do not add up across days, so they stay an exact query on the sales, which carry their lead's
attribution (``Sale.lead_source``/``meta_campaign_id``) and an index that answers it alone.
Several windows are read in one pass (conditional aggregates): the stats endpoint reads the period
and its previous period together.
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

from crm_marketing.models import Account, Lead, Sale
from marketing.models import CampaignDay, DailyInsight, ExchangeRate
from marketing.services import stats_cache
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
    # Some spend or revenue had no exchange rate and is left out of the sums: a ratio of money would
    # then compare a part of the money with all the leads, clicks or customers, so it is None.
    unconverted: bool = False

    def _money_ratio(self, numerator: Decimal, divisor: Decimal | int, scale: Decimal | int = 1) -> Decimal | None:
        return None if self.unconverted else ratio(numerator, divisor, scale)

    @property
    def roi(self) -> Decimal | None:
        """(revenue - spend) / spend * 100."""
        return self._money_ratio(self.revenue - self.spend, self.spend, HUNDRED)

    @property
    def cpa(self) -> Decimal | None:
        return self._money_ratio(self.spend, self.customers)

    @property
    def cost_per_lead(self) -> Decimal | None:
        return self._money_ratio(self.spend, self.leads)

    @property
    def cpc(self) -> Decimal | None:
        return self._money_ratio(self.spend, self.clicks)

    @property
    def cpm(self) -> Decimal | None:
        return self._money_ratio(self.spend, self.impressions, 1000)

    @property
    def ctr(self) -> Decimal | None:
        return ratio(self.clicks, self.impressions, HUNDRED)

    def add(self, other: "Figures") -> None:
        for name in ("leads", "opportunities", "revenue", "customers", "spend", "impressions", "clicks"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unconverted = self.unconverted or other.unconverted


@dataclass
class Converter:
    """Converts amounts into the account's currency with its ExchangeRate rows (either direction).

    Amounts in a currency without a rate are left out of the sums and remembered in
    ``missing``; the endpoints answer ``currency_mismatch: true`` with those currencies.
    """

    target: str
    rates: dict[str, Decimal]
    missing: set[str] = field(default_factory=set)

    @classmethod
    def for_account(cls, account: Account) -> "Converter":
        """Rates into the account's currency; a row entered the other way round ("1 USD = 1000 ARS" for an
        ARS ad account in a USD account) converts with its inverse. A row in the wanted direction wins."""
        rows = ExchangeRate.objects.filter(Q(to_currency=account.currency) | Q(from_currency=account.currency),
                                           account=account).values_list("from_currency", "to_currency", "rate")
        rates: dict[str, Decimal] = {}
        for source, target, rate in sorted(rows, key=lambda row: row[1] == account.currency):
            if target == account.currency:
                rates[source] = Decimal(rate)
            elif source == account.currency:
                rates[target] = Decimal(1) / Decimal(rate)
        return cls(target=account.currency, rates=rates)

    def can_convert(self, currency: str) -> bool:
        return currency == self.target or currency in self.rates

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


def _span(windows: Sequence[Window]) -> Window:
    return Window(min(w.since for w in windows), max(w.until for w in windows))


def _customers(scope: Scope, windows: Sequence[Window], key: Key) -> list[dict]:
    """Distinct Meta customers (leads with a completed sale) per group key, as ``n{i}`` for window i."""
    tz = scope.tz

    def closed_within(window: Window) -> Q:
        start, end = window.bounds(tz)
        return Q(closed_at__gte=start, closed_at__lt=end)

    sales = Sale.objects.filter(closed_within(_span(windows)), account=scope.account, status=Sale.Status.COMPLETED,
                                lead_source__in=Lead.META_SOURCES)
    if scope.campaign_id is not None:
        sales = sales.filter(meta_campaign_id=scope.campaign_id)
    counts = {f"n{i}": Count("lead_id", distinct=True, filter=closed_within(window) if len(windows) > 1 else None)
              for i, window in enumerate(windows)}
    group = {"campaign": {"key": F("meta_campaign_id")}, "day": {"key": TruncDate("closed_at", tzinfo=tz)}}.get(key)
    if group is None:
        return [{"key": TOTAL, **sales.aggregate(**counts)}]
    return list(sales.order_by().values(**group).annotate(**counts))


def _cell_rows(scope: Scope, windows: Sequence[Window], key: Key) -> list[dict]:
    """The rollup's sums per currency (and group key) for each window i, as ``<measure>{i}``."""
    span = _span(windows)
    cells = CampaignDay.objects.filter(account=scope.account, day__gte=span.since, day__lte=span.until)
    if scope.campaign_id is not None:
        cells = cells.filter(meta_campaign_id=scope.campaign_id)
    group = {"campaign": {"key": F("meta_campaign_id")}, "day": {"key": F("day")}}.get(key, {})
    sums = {
        f"{name}{i}": Sum(name, filter=Q(day__gte=window.since, day__lte=window.until)) if len(windows) > 1 else Sum(name)
        for name in CampaignDay.MEASURES for i, window in enumerate(windows)
    }
    return list(cells.order_by().values("currency", **group).annotate(**sums))


def collect(scope: Scope, windows: Sequence[Window], key: Key = TOTAL, *, customers: bool = True) -> list[dict[str, Figures] | dict[date, Figures]]:
    """Figures per window, each a dict from the group key (TOTAL, campaign id or day) to Figures.

    ``customers=False`` skips the distinct-customers query for callers that show no ``cpa``. The result
    comes from the stats cache while the account's rollup is unchanged (marketing/services/stats_cache.py),
    keyed also by the exchange rates read for this request."""
    converter = scope.converter
    read = ("collect", tuple((w.since, w.until) for w in windows), key, scope.campaign_id, customers,
            scope.account.timezone, converter.target, tuple(sorted(converter.rates.items())))
    result, missing = stats_cache.cached(scope.account.pk, read, lambda: _collect(scope, windows, key, customers))
    converter.missing |= missing
    return result


def _collect(scope: Scope, windows: Sequence[Window], key: Key, customers: bool) -> tuple[list[dict], set[str]]:
    """``collect``'s figures read from the rollup and the sales, and the currencies it could not convert."""
    result: list[dict] = [defaultdict(Figures) for _ in windows]
    converter = Converter(scope.converter.target, scope.converter.rates)  # its own ``missing``: cached with the result
    for row in _cell_rows(scope, windows, key):
        for i in range(len(windows)):
            figures = result[i][row.get("key", TOTAL)]
            figures.leads += row[f"leads{i}"] or 0
            figures.opportunities += row[f"opportunities{i}"] or 0
            figures.impressions += row[f"impressions{i}"] or 0
            figures.clicks += row[f"clicks{i}"] or 0
            if row[f"spend{i}"] is not None:  # None: no cell of this currency in window i
                figures.spend += converter.convert(row["currency"], row[f"spend{i}"])
                figures.revenue += converter.convert(row["currency"], row[f"revenue{i}"])
                if not converter.can_convert(row["currency"]) and (row[f"spend{i}"] or row[f"revenue{i}"]):
                    figures.unconverted = True
    if customers:
        for row in _customers(scope, windows, key):
            for i in range(len(windows)):
                result[i][row["key"]].customers += row[f"n{i}"] or 0
    return result, converter.missing


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
