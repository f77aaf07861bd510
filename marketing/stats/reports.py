"""The stats endpoints' payloads, built from ``figures.collect``. Values stay Decimal here; the
serializers (marketing/serializers.py) round money to 2 decimals and percentages to 1.

Currencies: every sum is in the account's currency. Amounts in another currency (a BRL ad
account, a sale in EUR) are converted with the account's ExchangeRate row for that pair; when a
rate is missing those amounts are left out and the payload says ``currency_mismatch: true`` with
``unconverted_currencies``, and the ratios of money it touched (roi, cpa, cost per lead, cpc, cpm)
are null rather than computed on a part of the money. This keeps the hub working (leads, the other
sums) and tells the admin what to add, where a 409 would blank the whole dashboard.
"""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Mapping
from zoneinfo import ZoneInfo

from django.db.models import Max
from django.utils import timezone

from crm_marketing.errors import NotFound
from crm_marketing.models import Account
from marketing.models import AdAccount, Campaign
from marketing.services.insights import ATTRIBUTION_WINDOWS
from marketing.stats.figures import TOTAL, collect, earliest_day
from marketing.stats.values import HUNDRED, Converter, Figures, Scope, change
from marketing.time_ranges import Window, resolve_window
from meta_oauth.models import MetaConnection

CONNECT_URL = "/crm/auth/meta/url"
ATTRIBUTION_WINDOW = "_".join(ATTRIBUTION_WINDOWS)  # the windows the insights sync asks Meta for: "7d_click_1d_view"
WEEKLY_AFTER_DAYS = 92
CAMPAIGN_STATUSES = ("ACTIVE", "PAUSED", "DELETED", "ARCHIVED")
CAMPAIGN_ORDERING = ("spend", "revenue", "roi", "leads", "name")
DEFAULT_CAMPAIGN_ORDERING = ("-spend",)
# Meta budgets are in the currency's minor unit; these currencies have none (offset 1).
ZERO_DECIMAL_CURRENCIES = frozenset({"CLP", "COP", "CRC", "HUF", "ISK", "IDR", "JPY", "KRW", "PYG", "TWD", "VND"})


def today_for(account: Account) -> date:
    return timezone.localdate(timezone=ZoneInfo(account.timezone))


def window_for(account: Account, params: Mapping) -> Window:
    """The request's window (see marketing.time_ranges); 400 on anything unknown."""
    return resolve_window(params, today=today_for(account), earliest=lambda: earliest_day(account))


def campaign_for(account: Account, meta_campaign_id: str) -> Campaign:
    """The account's campaign by its Meta id; 404 alike for unknown and another account's."""
    campaign = Campaign.objects.filter(account=account, meta_campaign_id=meta_campaign_id).select_related("ad_account").first()
    if campaign is None:
        raise NotFound()
    return campaign


def meta_state(account: Account) -> tuple[bool, object]:
    """(Meta connected, the last insights sync of any of its ad accounts): the stats payload's own inputs."""
    connected = MetaConnection.objects.filter(account=account, status=MetaConnection.Status.CONNECTED).exists()
    return connected, AdAccount.objects.filter(account=account).aggregate(last=Max("last_synced_at"))["last"]


def campaign_rows(account: Account, status: str | None = None) -> list[tuple[str, str, str]]:
    """(Meta id, name, status) of the account's campaigns (of one status): what the campaign payloads show of them."""
    campaigns = Campaign.objects.filter(account=account)
    if status:
        campaigns = campaigns.filter(status=status)
    return list(campaigns.order_by("pk").values_list("meta_campaign_id", "name", "status"))


def _currency_fields(converter: Converter) -> dict:
    return {"currency_mismatch": bool(converter.missing), "unconverted_currencies": sorted(converter.missing)}


def period_of(window: Window, today: date) -> dict:
    """``{since, until, complete}``. ``complete`` is false while the period includes today (or a later day): its
    figures are still growing (and Meta restates recent spend), so a ``*_change`` against a previous period of
    complete days reads low; the hub's default range ends yesterday and labels the others "today so far"."""
    return {**window.as_dict(), "complete": window.until < today}


def _window_fields(window: Window, account: Account) -> dict:
    return {"time_range": window.label, "period": period_of(window, today_for(account))}


def marketing_stats(account: Account, window: Window, *, converter: Converter | None = None,
                    state: tuple[bool, object] | None = None) -> dict:
    """The hub's headline figures and their change vs the previous period.

    ``*_change`` is the percentage change vs the previous period (None when that was 0);
    ``roi_change`` is the difference in ROI percentage points (roi - previous roi, None when
    either is undefined), since a percentage change of a percentage reads wrong.
    """
    converter = converter or Converter.for_account(account)
    previous = window.previous()
    today = today_for(account)
    current_figures, previous_figures = (by_key[TOTAL] for by_key in collect(Scope(account, converter), [window, previous]))
    roi, previous_roi = current_figures.roi, previous_figures.roi
    connected, last_synced_at = state or meta_state(account)
    payload = {
        "leads": current_figures.leads,
        "leads_change": change(current_figures.leads, previous_figures.leads),
        "opportunities": current_figures.opportunities,
        "opportunities_change": change(current_figures.opportunities, previous_figures.opportunities),
        "sales_revenue": current_figures.revenue,
        "revenue_change": change(current_figures.revenue, previous_figures.revenue),
        "marketing_spend": current_figures.spend,
        "spend_change": change(current_figures.spend, previous_figures.spend),
        "roi_percentage": roi,
        "roi_change": roi - previous_roi if roi is not None and previous_roi is not None else None,
        "cpa": current_figures.cpa,
        "cost_per_lead": current_figures.cost_per_lead,
        "currency": account.currency,
        "time_range": window.label,
        "period": period_of(window, today),
        "previous_period": period_of(previous, today),
        "meta_connected": connected,
        "last_synced_at": last_synced_at,
        **_currency_fields(converter),
    }
    if not connected:
        payload["connect_url"] = CONNECT_URL
    return payload


def _campaign_stat(meta_campaign_id: str, name: str, status: str, figures: Figures, currency: str) -> dict:
    spend, money_ratios = figures.spend, not figures.unconverted  # Figures.roi and .cpa, inlined: 5,000 campaigns at scale
    return {
        "id": meta_campaign_id, "name": name, "status": status,
        "spend": spend, "impressions": figures.impressions, "clicks": figures.clicks,
        "leads": figures.leads, "opportunities": figures.opportunities, "revenue": figures.revenue,
        "roi": (figures.revenue - spend) / spend * HUNDRED if money_ratios and spend else None,
        "cpa": spend / figures.customers if money_ratios and figures.customers else None,
        "currency": currency,
    }


def _campaign_stats(account: Account, window: Window, converter: Converter, campaigns: list[tuple[str, str, str]]) -> tuple[list[dict], Figures]:
    """CampaignStats of ``campaigns`` and the account's totals (all Meta figures, also those
    of leads without a synced campaign) from the same queries."""
    (by_campaign,) = collect(Scope(account, converter), [window], key="campaign")
    totals = Figures.total(by_campaign.values())
    none = Figures()
    rows = [_campaign_stat(meta_campaign_id, name, status, by_campaign.get(meta_campaign_id) or none, account.currency)
            for meta_campaign_id, name, status in campaigns]
    return rows, totals


def roi_report(account: Account, window: Window, *, converter: Converter | None = None,
               campaigns: list[tuple[str, str, str]] | None = None) -> dict:
    """Campaigns with any figure in the window (by spend, then name) and the account's totals.

    ``total_spend``/``total_revenue`` equal the stats endpoint's ``marketing_spend`` and
    ``sales_revenue``; ``average_roi`` is the ROI of those totals (spend-weighted), not a mean
    of the campaigns' ROIs.
    """
    converter = converter or Converter.for_account(account)
    rows, totals = _campaign_stats(account, window, converter, campaign_rows(account) if campaigns is None else campaigns)
    active = [row for row in rows if any(row[k] for k in ("spend", "impressions", "clicks", "leads", "opportunities", "revenue"))]
    return {
        "campaigns": order_campaigns(active, DEFAULT_CAMPAIGN_ORDERING),
        "time_period": window.label,
        "period": period_of(window, today_for(account)),
        "total_spend": totals.spend,
        "total_revenue": totals.revenue,
        "average_roi": totals.roi,
        "currency": account.currency,
        **_currency_fields(converter),
    }


def order_campaigns(rows: list[dict], terms: tuple[str, ...]) -> list[dict]:
    """Sort CampaignStats by terms like ("-spend", "name"); None values (roi, cpa) always last."""
    rows = sorted(rows, key=lambda row: (row["name"].casefold(), row["id"]))
    for term in reversed(terms):
        name, descending = term.lstrip("-"), term.startswith("-")
        value = (lambda row: row[name].casefold()) if name == "name" else (lambda row: row[name])
        present = sorted((row for row in rows if row[name] is not None), key=value, reverse=descending)
        rows = present + [row for row in rows if row[name] is None]
    return rows


def campaign_list(account: Account, window: Window, *, status: str | None, ordering: tuple[str, ...],
                  converter: Converter | None = None, campaigns: list[tuple[str, str, str]] | None = None) -> tuple[list[dict], Converter]:
    converter = converter or Converter.for_account(account)
    rows, _ = _campaign_stats(account, window, converter, campaign_rows(account, status) if campaigns is None else campaigns)
    return order_campaigns(rows, ordering), converter


def _weeks(points: dict[date, Figures]) -> dict[date, Figures]:
    """Fold days into ISO weeks labelled by their Monday (the first and last may be partial)."""
    weeks: dict[date, Figures] = {}
    for day, figures in points.items():
        weeks.setdefault(day - timedelta(days=day.weekday()), Figures()).add(figures)
    return weeks


def _days(window: Window, by_day: dict) -> dict[date, Figures]:
    """Every day of the window (zero-filled) in order."""
    return {window.since + timedelta(days=i): by_day.get(window.since + timedelta(days=i)) or Figures() for i in range(window.days)}


def timeseries(account: Account, window: Window, campaign: Campaign | None = None, *, converter: Converter | None = None) -> list[dict]:
    """One point per day, or per ISO week (its Monday) when the window is longer than 92 days."""
    scope = Scope(account, converter or Converter.for_account(account), campaign.meta_campaign_id if campaign else None)
    (by_day,) = collect(scope, [window], key="day", customers=False)  # no cpa on the chart
    points = _days(window, by_day)
    if window.days > WEEKLY_AFTER_DAYS:
        points = _weeks(points)
    return [
        {"date": day, "spend": f.spend, "leads": f.leads, "opportunities": f.opportunities, "revenue": f.revenue}
        for day, f in points.items()
    ]


def budget_amount(minor_units: int | None, currency: str) -> Decimal | None:
    if minor_units is None:
        return None
    return Decimal(minor_units) if currency in ZERO_DECIMAL_CURRENCIES else Decimal(minor_units) / HUNDRED


def _performance(figures: Figures) -> dict:
    return {
        "spend": figures.spend, "impressions": figures.impressions, "clicks": figures.clicks, "leads": figures.leads,
        "opportunities": figures.opportunities, "revenue": figures.revenue, "roi_percentage": figures.roi,
        "cpa": figures.cpa, "cpc": figures.cpc, "cpm": figures.cpm, "ctr": figures.ctr,
    }


def campaign_detail(campaign: Campaign, window: Window) -> dict:
    """The campaign and its performance in the window. Budgets are in the ad account's
    currency (``budget_currency``); performance is in the account's (``currency``)."""
    account = campaign.account
    converter = Converter.for_account(account)
    (by_key,) = collect(Scope(account, converter, campaign.meta_campaign_id), [window])
    budget_currency = campaign.ad_account.currency
    return {
        "id": campaign.meta_campaign_id, "name": campaign.name, "objective": campaign.objective, "status": campaign.status,
        "daily_budget": budget_amount(campaign.daily_budget, budget_currency),
        "lifetime_budget": budget_amount(campaign.lifetime_budget, budget_currency),
        "budget_currency": budget_currency,
        "start_time": campaign.start_time, "end_time": campaign.stop_time,
        "performance": _performance(by_key[TOTAL]),
        "currency": account.currency,
        **_window_fields(window, account),
        **_currency_fields(converter),
    }


def campaign_insights(campaign: Campaign, window: Window) -> dict:
    """Every day of the window (zero-filled): Meta's figures and the CRM's for this campaign."""
    account = campaign.account
    converter = Converter.for_account(account)
    (by_day,) = collect(Scope(account, converter, campaign.meta_campaign_id), [window], key="day")
    insights = [{"date": day, **_performance(f)} for day, f in _days(window, by_day).items()]
    for row in insights:
        del row["roi_percentage"]
    return {
        "id": campaign.meta_campaign_id, "name": campaign.name, "insights": insights,
        **_window_fields(window, account), "attribution_window": ATTRIBUTION_WINDOW,
        "currency": account.currency,
        **_currency_fields(converter),
    }
