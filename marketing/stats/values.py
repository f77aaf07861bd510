"""The values the ROI reads compute with: ``Figures`` (one scope's counts and money, with its ratios),
``Converter`` (amounts into the account's currency, remembering the currencies without a rate) and
``Scope`` (whose figures). How they are read from the rollups is marketing.stats.figures."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable
from zoneinfo import ZoneInfo

from django.db.models import Q

from crm_marketing.models import Account
from marketing.models import ExchangeRate

ZERO = Decimal("0")
HUNDRED = Decimal("100")
CENT = Decimal("0.01")


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
        # Written out, not a getattr/setattr loop over the names: called per campaign, 5,000 of them at scale.
        self.leads += other.leads
        self.opportunities += other.opportunities
        self.revenue += other.revenue
        self.customers += other.customers
        self.spend += other.spend
        self.impressions += other.impressions
        self.clicks += other.clicks
        self.unconverted = self.unconverted or other.unconverted

    @classmethod
    def total(cls, parts: Iterable["Figures"]) -> "Figures":
        total = cls()
        for part in parts:
            total.add(part)
        return total


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
