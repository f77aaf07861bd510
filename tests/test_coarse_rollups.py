"""Reads that do not grow with history (AccountDay, the campaigns' running totals, RepeatSale) give the figures
of the source rows for any window.

Every check compares what the stats read (``marketing.stats.collect``, and the endpoints) with an independent
recomputation from the raw tables written here in plain Python: Meta leads by their ``created_at``,
opportunities of Meta leads, completed sales of Meta leads (attribution from the lead row, not the sale's
copy), distinct customers, insight spend by date, money converted with the account's rate. mallory's globex
(Europe/Madrid) has two DST changes in its history, campaigns in EUR and USD, sales in both, repeat customers
and leads without a campaign; the windows cross month edges and DST days and run past both ends of the history.
"""
from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from crm_marketing.models import Account, Lead, Opportunity, Sale
from marketing.models import (
    AccountDay, CampaignDay, CampaignToDate, CampaignTotal, DailyInsight, ExchangeRate, RepeatSale,
)
from marketing.services import rollup_marks, rollups
from marketing.serializers import CENT, rounded
from marketing.services.insight_store import upsert_insights
from marketing.stats import Converter, Scope, collect
from marketing.time_ranges import Window
from tests.factories import make_ad_account, make_campaign, make_insight, make_lead, make_opportunity, make_sale

pytestmark = pytest.mark.django_db
D = dt.date
MADRID = ZoneInfo("Europe/Madrid")
META = ("meta_lead_ads", "meta_ctwa")
CAMPAIGNS = ("130001", "130002", "130003")
FIGURES = ("leads", "opportunities", "revenue", "customers", "spend", "impressions", "clicks")
WINDOWS = [
    Window(D(2025, 3, 29), D(2025, 3, 31)),   # the spring DST change (30 March) and a month edge
    Window(D(2025, 3, 30), D(2025, 3, 30)),   # the 23-hour day alone
    Window(D(2025, 10, 26), D(2025, 10, 26)),  # the 25-hour day alone
    Window(D(2025, 10, 20), D(2025, 11, 3)),  # autumn DST change and a month edge
    Window(D(2025, 2, 1), D(2025, 12, 31)),   # every month whole
    Window(D(2025, 2, 14), D(2025, 4, 15)),   # partial months at both ends
    Window(D(2025, 4, 30), D(2025, 5, 1)),    # two days across a month edge
    Window(D(2025, 6, 1), D(2025, 6, 30)),    # a whole month
    Window(D(2025, 1, 1), D(2025, 2, 10)),    # starts before the history
    Window(D(2025, 11, 20), D(2026, 2, 1)),   # ends after the history
    Window(D(2024, 1, 1), D(2024, 12, 31)),   # before everything
    Window(D(2020, 1, 1), D(2030, 12, 31)),   # the whole history and more ("lifetime")
]


# -- the independent recomputation ----------------------------------------------------------------------------
def raw_figures(account: Account, window: Window, key: str, campaign: str | None = None) -> dict:
    """{group key: {figure: value}} straight from the source rows."""
    tz = ZoneInfo(account.timezone)
    start = dt.datetime.combine(window.since, dt.time(), tzinfo=tz)
    end = dt.datetime.combine(window.until + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    rates = {r.from_currency: r.rate for r in ExchangeRate.objects.filter(account=account, to_currency=account.currency)}
    rates[account.currency] = Decimal(1)
    out: dict = defaultdict(lambda: dict.fromkeys(FIGURES, 0))
    customers: dict = defaultdict(set)

    def group(moment_or_day, meta_campaign_id: str):
        day = moment_or_day.astimezone(tz).date() if isinstance(moment_or_day, dt.datetime) else moment_or_day
        return {"total": "total", "campaign": meta_campaign_id, "day": day}[key]

    def wanted(meta_campaign_id: str) -> bool:
        return campaign is None or meta_campaign_id == campaign

    for lead in Lead.objects.filter(account=account, lead_source__in=META, created_at__gte=start, created_at__lt=end):
        if wanted(lead.meta_campaign_id):
            out[group(lead.created_at, lead.meta_campaign_id)]["leads"] += 1
    for opportunity in Opportunity.objects.filter(account=account, created_at__gte=start, created_at__lt=end).select_related("lead"):
        if opportunity.lead.lead_source in META and wanted(opportunity.lead.meta_campaign_id):
            out[group(opportunity.created_at, opportunity.lead.meta_campaign_id)]["opportunities"] += 1
    for sale in Sale.objects.filter(account=account, status="completed", closed_at__gte=start, closed_at__lt=end).select_related("lead"):
        if sale.lead.lead_source in META and wanted(sale.lead.meta_campaign_id):
            key_value = group(sale.closed_at, sale.lead.meta_campaign_id)
            out[key_value]["revenue"] += sale.amount * rates[sale.currency]
            customers[key_value].add(sale.lead_id)
    for insight in DailyInsight.objects.filter(account=account, date__gte=window.since, date__lte=window.until):
        if wanted(insight.meta_campaign_id):
            figures = out[group(insight.date, insight.meta_campaign_id)]
            figures["spend"] += insight.spend * rates[insight.currency]
            figures["impressions"] += insight.impressions
            figures["clicks"] += insight.clicks
    for key_value, leads in customers.items():
        out[key_value]["customers"] = len(leads)
    return {k: v for k, v in out.items() if any(v.values())}


def read_figures(account: Account, window: Window, key: str, campaign: str | None = None) -> dict:
    (by_key,) = collect(Scope(account, Converter.for_account(account), campaign), [window], key)
    read = {k: {name: getattr(f, name) for name in FIGURES} for k, f in by_key.items()}
    return {k: v for k, v in read.items() if any(v.values())}


def assert_every_window_matches(account: Account) -> None:
    for window in WINDOWS:
        for key, campaign in (("total", None), ("campaign", None), ("day", None), ("total", "130002"), ("day", "130002")):
            assert read_figures(account, window, key, campaign) == raw_figures(account, window, key, campaign), (window, key, campaign)
    stats = collect(Scope(account, Converter.for_account(account)), WINDOWS, "total")  # several windows in one pass
    assert [read["total"].customers for read in stats] == [raw_figures(account, w, "total").get("total", {}).get("customers", 0)
                                                           for w in WINDOWS]


def coarse_tables(account: Account) -> dict[str, list[tuple]]:
    def rows(model, *fields):
        return sorted(model.objects.filter(account=account).values_list(*fields))

    measures = CampaignDay.MEASURES
    return {
        "campaign days": rows(CampaignDay, "day", "meta_campaign_id", "currency", *measures),
        "account days": rows(AccountDay, "day", "currency", *measures),
        "to date": rows(CampaignToDate, "day", "meta_campaign_id", "currency", *measures),
        "totals": rows(CampaignTotal, "meta_campaign_id", "currency", "first_day", "last_day", *measures),
        "repeat sales": rows(RepeatSale, "sale_id", "lead_id", "meta_campaign_id", "closed_at", "previous_closed_at",
                             "previous_in_campaign_closed_at"),
    }


# -- the history -------------------------------------------------------------------------------------------------
@pytest.fixture
def history(globex):
    """Nine months of globex (EUR, Europe/Madrid): three campaigns (one in a USD ad account), leads at
    night around both DST changes, a lead without a campaign, repeat customers, a refund, a USD sale."""
    rng = random.Random(11)
    eur = make_ad_account(globex, "act_eur", "EUR", selected=True)
    usd = make_ad_account(globex, "act_usd", "USD", selected=False)
    ExchangeRate.objects.create(account=globex, from_currency="USD", to_currency="EUR", rate=Decimal("0.90000000"))
    campaigns = [make_campaign(eur, CAMPAIGNS[0], "Madrid"), make_campaign(eur, CAMPAIGNS[1], "Sevilla"),
                 make_campaign(usd, CAMPAIGNS[2], "Miami")]
    first = D(2025, 2, 20)
    make_insight(campaigns[0], "ad-first", first, "10.00", 100, 1)  # one through the model (its signal)
    upsert_insights([  # the rest as the sync stores them
        (globex.pk, c.ad_account_id, c.meta_campaign_id, "set", f"ad-{c.meta_campaign_id}", first + dt.timedelta(days=offset),
         c.ad_account.currency, Decimal(rng.randrange(100, 9000)) / 100, rng.randrange(100, 5000), rng.randrange(1, 90), 0, 0, 0,
         timezone.now())
        for offset in range(1, 280, 3) for c in campaigns[: 1 + offset % 3]])
    moments = [dt.datetime(2025, 3, 29, 23, 30, tzinfo=MADRID), dt.datetime(2025, 3, 30, 0, 30, tzinfo=MADRID),
               dt.datetime(2025, 3, 30, 23, 45, tzinfo=MADRID), dt.datetime(2025, 10, 26, 0, 15, tzinfo=MADRID),
               dt.datetime(2025, 10, 26, 23, 50, tzinfo=MADRID), dt.datetime(2025, 10, 31, 23, 59, tzinfo=MADRID)]
    moments += [dt.datetime.combine(first + dt.timedelta(days=rng.randrange(280)), dt.time(rng.randrange(24), rng.randrange(60)),
                                    tzinfo=MADRID) for _ in range(40)]
    leads = []
    for number, moment in enumerate(sorted(moments)):
        source = "organic" if number % 7 == 6 else META[number % 2]
        campaign = "" if number % 11 == 5 else CAMPAIGNS[number % 3]
        leads.append(make_lead(globex, lead_source=source, meta_campaign_id=campaign if source in META else "", created_at=moment))
    for lead in leads[::2]:
        opened = lead.created_at + dt.timedelta(hours=rng.randrange(1, 200))
        opportunity = make_opportunity(lead, stage="won", created_at=opened, closed_at=opened + dt.timedelta(days=2))
        make_sale(lead, f"{rng.randrange(1000, 90000) / 100:.2f}", opportunity=opportunity, closed_at=opened + dt.timedelta(days=2),
                  currency="USD" if lead.pk % 5 == 0 else "EUR", status="refunded" if lead.pk % 9 == 0 else "completed")
    repeat = leads[3]  # a repeat customer: twice on the short night, once the next month, once on the long day
    for moment in (dt.datetime(2025, 3, 30, 0, 45, tzinfo=MADRID), dt.datetime(2025, 3, 30, 22, 0, tzinfo=MADRID),
                   dt.datetime(2025, 4, 1, 9, 0, tzinfo=MADRID), dt.datetime(2025, 10, 26, 1, 30, tzinfo=MADRID)):
        make_sale(repeat, "100.00", closed_at=moment)
    rollup_marks.fold_account(globex.pk)  # the worker folds what those writes marked
    return {"leads": leads, "campaigns": campaigns, "repeat": repeat}


# -- the tests ---------------------------------------------------------------------------------------------------
def test_every_figure_of_every_window_equals_the_source_rows(history, globex):
    assert RepeatSale.objects.filter(account=globex).exists()  # the history has repeat customers to tell apart
    assert_every_window_matches(globex)


def test_a_campaigns_running_total_has_a_row_for_every_day_of_its_span_and_its_total_on_the_last(history, globex):
    for total in CampaignTotal.objects.filter(account=globex):
        days = list(CampaignToDate.objects.filter(account=globex, meta_campaign_id=total.meta_campaign_id, currency=total.currency)
                    .order_by("day").values_list("day", flat=True))
        assert days == [total.first_day + dt.timedelta(days=i) for i in range((total.last_day - total.first_day).days + 1)]
        last = CampaignToDate.objects.get(account=globex, meta_campaign_id=total.meta_campaign_id, currency=total.currency,
                                          day=total.last_day)
        assert [getattr(last, m) for m in CampaignDay.MEASURES] == [getattr(total, m) for m in CampaignDay.MEASURES]


def test_writes_through_the_models_and_the_insights_upsert_keep_every_window_exact(history, globex):
    leads, repeat = history["leads"], history["repeat"]
    first_sale = repeat.sales.order_by("closed_at").first()
    first_sale.status = "refunded"  # its repeat sale on the same night becomes the first
    first_sale.save()
    moved = leads[10]
    moved.meta_campaign_id = CAMPAIGNS[2]  # its opportunity and sale move with it
    moved.save()
    leads[4].lead_source = "organic"  # out of the Meta figures
    leads[4].save()
    sale = Sale.objects.filter(account=globex, status="completed").exclude(lead=repeat).order_by("closed_at").first()
    sale.closed_at = dt.datetime(2025, 7, 31, 23, 30, tzinfo=MADRID)  # another month
    sale.save()
    Sale.objects.filter(pk=Sale.objects.filter(account=globex).order_by("-closed_at").values("pk")[:1]).get().delete()
    make_lead(globex, lead_source="meta_ctwa", meta_campaign_id=CAMPAIGNS[1], created_at=dt.datetime(2025, 1, 5, 10, tzinfo=MADRID))
    late = make_lead(globex, lead_source="meta_lead_ads", meta_campaign_id="130009", created_at=dt.datetime(2026, 1, 3, 10, tzinfo=MADRID))
    make_sale(late, "77.70", currency="USD", closed_at=dt.datetime(2026, 1, 4, 10, tzinfo=MADRID))
    make_sale(repeat, "10.00", closed_at=dt.datetime(2025, 3, 30, 0, 50, tzinfo=MADRID))
    leads[1].delete()  # no opportunity, no sale
    eur = history["campaigns"][0].ad_account
    upsert_insights([(globex.pk, eur.pk, CAMPAIGNS[0], "set", f"ad-{CAMPAIGNS[0]}", D(2025, 3, 30), "EUR", Decimal("12.34"), 10, 1, 0, 0, 0,
                      timezone.now()),  # a restated day
                     (globex.pk, eur.pk, CAMPAIGNS[1], "set", "ad-new", D(2025, 12, 31), "EUR", Decimal("5.00"), 50, 2, 0, 0, 0,
                      timezone.now())])  # a new last day for a campaign

    assert_every_window_matches(globex)  # marked and not folded yet: the reads recompute the marked cells
    rollup_marks.fold_account(globex.pk)
    assert_every_window_matches(globex)  # folded into every table


def test_a_rebuild_from_scratch_or_from_a_day_reproduces_the_incrementally_kept_tables(history, globex):
    kept = coarse_tables(globex)
    rollups.rebuild(globex, since=D(2025, 6, 1))
    assert coarse_tables(globex) == kept
    for model in (CampaignDay, AccountDay, CampaignToDate, CampaignTotal, RepeatSale):
        model.objects.filter(account=globex).delete()
    rollups.rebuild(globex)
    assert coarse_tables(globex) == kept


def test_the_roi_report_over_the_lifetime_lists_each_campaigns_figures_of_the_source_rows(history, globex, mallory_api):
    response = mallory_api.get("/crm/marketing/stats/roi?time_range=lifetime")
    earliest = D(2025, 2, 20)
    raw = raw_figures(globex, Window(earliest, timezone.localdate(timezone=MADRID)), "campaign")

    campaigns = {row["id"]: row for row in response.json()["data"]["campaigns"]}
    assert {c: (row["leads"], row["opportunities"], row["revenue"], row["spend"]) for c, row in campaigns.items()} == {
        c: (f["leads"], f["opportunities"], rounded(f["revenue"], CENT), rounded(f["spend"], CENT))
        for c, f in raw.items() if c in CAMPAIGNS
    }
