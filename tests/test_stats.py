"""ROI stats against a golden dataset whose every figure is worked out by hand below.

acme (USD, America/Argentina/Buenos_Aires = UTC-3 all year) reports on March 2025
(since=2025-03-01, until=2025-03-31); the previous period is 2025-01-29..2025-02-28 (31 days).

Ad accounts: act_usd (USD, selected) and act_brl (BRL), with ExchangeRate BRL->USD = 0.20.
Campaigns: C1 120001 "Spring Leads" (USD, ACTIVE), C2 120002 "WhatsApp Promo" (USD, PAUSED),
C3 120003 "Brazil Reach" (BRL, ACTIVE), C4 120004 "Old Archive" (USD, ARCHIVED, previous period only).

Insights                      | current window                      | outside / previous
C1 a1: 03-01 100.00 10000 imp 200 clk; 03-15 50.50 5000/100         | 01-28 1000.00 (before both periods)
C1 a2: 03-31 20.25 2000/30                                          |
C2 b1: 03-10 80.00 8000/160                                         | 04-01 999.00 (after)
C3 c1: 03-05 500.00 BRL 20000/400; 03-20 250.00 BRL 10000/100       | 02-28 100.00 BRL (previous)
C4 d1:                                                              | 02-10 200.00 4000/40 (previous)
Leads (local time): L5 C1 03-01 00:10, L1 C1 03-02, L3 C2 ctwa 03-10, L4 C3 ctwa 03-20,
L2 C1 03-31 23:30 (UTC is April 1st), O1 organic 03-05; L6 C1 04-01 00:30 (after);
L7 C2 ctwa 02-28 22:00 (UTC is March 1st: previous), L8 C1 02-15 (previous).
Opportunities: Op1 L1 03-03, Op2 L3 03-12, Op3 L8 03-05, Op4 L4 03-21, OpO O1 03-06 (organic),
Op5 L7 02-28 23:00 (previous), Op6 L2 04-01 01:00 (after).
Sales: S1 L1 1200.00 03-10, S2 L3 500.00 refunded 03-15, S3 L8 300.00 03-20, S4 L4 1000.00 BRL
03-25, S5 L1 100.00 03-28, SO O1 1000.00 03-08 (organic), S6 L7 400.00 02-28 23:30 (previous),
S7 L1 999.00 04-01 01:00 (after).
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from marketing.models import Campaign, ExchangeRate, RollupDirtyCell
from marketing.services.rollup_marks import fold_account
from meta_oauth.models import MetaConnection
from tests.factories import connect_meta, make_ad_account, make_campaign, make_insight, make_lead, make_opportunity, make_sale

pytestmark = pytest.mark.django_db

BA = ZoneInfo("America/Argentina/Buenos_Aires")
MARCH = "since=2025-03-01&until=2025-03-31"
MARCH_PERIOD = {"since": "2025-03-01", "until": "2025-03-31", "complete": True}
PREVIOUS_PERIOD = {"since": "2025-01-29", "until": "2025-02-28", "complete": True}
CONNECT_URL = "/crm/auth/meta/url"


def local(month: int, day: int, hour: int = 12, minute: int = 0, year: int = 2025) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BA)


def data_of(response, status: int = 200):
    assert response.status_code == status, response.content
    body = response.json()
    assert body.pop("timestamp").endswith("Z")
    assert body["success"] is True
    return body["data"]


def build_golden(acme) -> dict:
    """The dataset of the module docstring; returns the campaigns by name."""
    usd = make_ad_account(acme, "act_usd", "USD", selected=True, last_synced_at=datetime(2025, 4, 1, 12, 0, tzinfo=ZoneInfo("UTC")))
    brl = make_ad_account(acme, "act_brl", "BRL", selected=False, last_synced_at=datetime(2025, 3, 31, 8, 0, tzinfo=ZoneInfo("UTC")))
    ExchangeRate.objects.create(account=acme, from_currency="BRL", to_currency="USD", rate=Decimal("0.20"))
    c1 = make_campaign(usd, "120001", "Spring Leads", "ACTIVE", objective="OUTCOME_LEADS", daily_budget=5000,
                       start_time=datetime(2025, 2, 1, 3, 0, tzinfo=ZoneInfo("UTC")))
    c2 = make_campaign(usd, "120002", "WhatsApp Promo", "PAUSED", objective="OUTCOME_ENGAGEMENT", lifetime_budget=150000,
                       start_time=datetime(2025, 2, 20, 3, 0, tzinfo=ZoneInfo("UTC")), stop_time=datetime(2025, 4, 30, 3, 0, tzinfo=ZoneInfo("UTC")))
    c3 = make_campaign(brl, "120003", "Brazil Reach", "ACTIVE", objective="OUTCOME_LEADS", daily_budget=10000)
    c4 = make_campaign(usd, "120004", "Old Archive", "ARCHIVED", objective="OUTCOME_TRAFFIC")

    make_insight(c1, "a1", date(2025, 3, 1), "100.00", 10000, 200)
    make_insight(c1, "a1", date(2025, 3, 15), "50.50", 5000, 100)
    make_insight(c1, "a2", date(2025, 3, 31), "20.25", 2000, 30)
    make_insight(c1, "a1", date(2025, 1, 28), "1000.00", 9000, 90)
    make_insight(c2, "b1", date(2025, 3, 10), "80.00", 8000, 160)
    make_insight(c2, "b1", date(2025, 4, 1), "999.00", 9999, 99)
    make_insight(c3, "c1", date(2025, 3, 5), "500.00", 20000, 400)
    make_insight(c3, "c1", date(2025, 3, 20), "250.00", 10000, 100)
    make_insight(c3, "c1", date(2025, 2, 28), "100.00", 2000, 20)
    make_insight(c4, "d1", date(2025, 2, 10), "200.00", 4000, 40)

    def meta_lead(source: str, campaign: Campaign, created_at: datetime):
        return make_lead(acme, lead_source=source, meta_campaign_id=campaign.meta_campaign_id, created_at=created_at)

    l1 = meta_lead("meta_lead_ads", c1, local(3, 2, 10))
    l2 = meta_lead("meta_lead_ads", c1, local(3, 31, 23, 30))
    l3 = meta_lead("meta_ctwa", c2, local(3, 10))
    l4 = meta_lead("meta_ctwa", c3, local(3, 20))
    meta_lead("meta_lead_ads", c1, local(3, 1, 0, 10))  # L5
    o1 = make_lead(acme, lead_source="organic", created_at=local(3, 5))
    meta_lead("meta_lead_ads", c1, local(4, 1, 0, 30))  # L6
    l7 = meta_lead("meta_ctwa", c2, local(2, 28, 22))
    l8 = meta_lead("meta_lead_ads", c1, local(2, 15))

    op1 = make_opportunity(l1, stage="won", created_at=local(3, 3), closed_at=local(3, 10))
    op2 = make_opportunity(l3, stage="won", created_at=local(3, 12), closed_at=local(3, 15))
    op3 = make_opportunity(l8, stage="won", created_at=local(3, 5), closed_at=local(3, 20))
    op4 = make_opportunity(l4, stage="won", created_at=local(3, 21), closed_at=local(3, 25))
    opo = make_opportunity(o1, stage="won", created_at=local(3, 6), closed_at=local(3, 8))
    make_opportunity(l7, stage="new", created_at=local(2, 28, 23))  # Op5
    make_opportunity(l2, stage="new", created_at=local(4, 1, 1))  # Op6

    make_sale(l1, "1200.00", opportunity=op1, closed_at=local(3, 10))  # S1
    make_sale(l3, "500.00", opportunity=op2, status="refunded", closed_at=local(3, 15))  # S2
    make_sale(l8, "300.00", opportunity=op3, closed_at=local(3, 20))  # S3
    make_sale(l4, "1000.00", opportunity=op4, currency="BRL", closed_at=local(3, 25))  # S4
    make_sale(l1, "100.00", closed_at=local(3, 28))  # S5
    make_sale(o1, "1000.00", opportunity=opo, closed_at=local(3, 8))  # SO
    make_sale(l7, "400.00", closed_at=local(2, 28, 23, 30))  # S6
    make_sale(l1, "999.00", closed_at=local(4, 1, 1))  # S7
    connect_meta(acme, ad_account=None)
    return {"C1": c1, "C2": c2, "C3": c3, "C4": c4}


@pytest.fixture(params=["folded", "not folded yet"])
def golden(request, acme):
    """The dataset, with its writes folded into the rollup by the worker or still only marked: the stats
    are the same either way (marketing.stats.pending recomputes the marked cells)."""
    campaigns = build_golden(acme)
    if request.param == "folded":
        fold_account(acme.pk)
        assert not RollupDirtyCell.objects.filter(account=acme).exists()
    else:
        assert RollupDirtyCell.objects.filter(account=acme).exists()
    return campaigns


# ---- expected figures, by hand ----------------------------------------------------------------
# Current: leads L1 L2 L3 L4 L5 = 5; opportunities Op1 Op2 Op3 Op4 = 4;
# revenue S1 1200 + S3 300 + S4 1000 BRL * 0.20 = 200 + S5 100 = 1800.00 (S2 refunded, SO organic);
# customers L1, L8, L4 = 3; spend 100 + 50.50 + 20.25 + 80 + (500 + 250) * 0.20 = 400.75.
# Previous: leads L7 L8 = 2; opportunities Op5 = 1; revenue S6 = 400.00; spend C4 200 + C3 100 BRL * 0.20 = 220.00.
GOLDEN_STATS = {
    "leads": 5,
    "leads_change": 150.0,            # (5 - 2) / 2 * 100
    "opportunities": 4,
    "opportunities_change": 300.0,    # (4 - 1) / 1 * 100
    "sales_revenue": 1800.0,
    "revenue_change": 350.0,          # (1800 - 400) / 400 * 100
    "marketing_spend": 400.75,
    "spend_change": 82.2,             # (400.75 - 220) / 220 * 100 = 82.159...
    "roi_percentage": 349.2,          # (1800 - 400.75) / 400.75 * 100 = 349.1578...
    "roi_change": 267.3,              # 349.1578... - (400 - 220) / 220 * 100 = 349.1578 - 81.8182 = 267.3397 points
    "cpa": 133.58,                    # 400.75 / 3 = 133.5833...
    "cost_per_lead": 80.15,           # 400.75 / 5
    "currency": "USD",
    "currency_mismatch": False,
    "unconverted_currencies": [],
    "time_range": "custom",
    "period": MARCH_PERIOD,
    "previous_period": PREVIOUS_PERIOD,
    "meta_connected": True,
    "last_synced_at": "2025-04-01T12:00:00Z",  # the latest of the two ad accounts
}

# Per campaign in March.
C1_STAT = {  # spend 100 + 50.50 + 20.25; leads L1 L2 L5; opps Op1 Op3 (L8 is C1's); revenue S1 + S3 + S5; customers L1 L8
    "id": "120001", "name": "Spring Leads", "status": "ACTIVE", "spend": 170.75, "impressions": 17000, "clicks": 330,
    "leads": 3, "opportunities": 2, "revenue": 1600.0,
    "roi": 837.0,    # (1600 - 170.75) / 170.75 * 100 = 837.04...
    "cpa": 85.38,    # 170.75 / 2 = 85.375, half up
    "currency": "USD",
}
C2_STAT = {  # S2 was refunded: no revenue, no customer
    "id": "120002", "name": "WhatsApp Promo", "status": "PAUSED", "spend": 80.0, "impressions": 8000, "clicks": 160,
    "leads": 1, "opportunities": 1, "revenue": 0.0, "roi": -100.0, "cpa": None, "currency": "USD",
}
C3_STAT = {  # (500 + 250) BRL * 0.20 = 150.00; S4 1000 BRL * 0.20 = 200.00
    "id": "120003", "name": "Brazil Reach", "status": "ACTIVE", "spend": 150.0, "impressions": 30000, "clicks": 500,
    "leads": 1, "opportunities": 1, "revenue": 200.0,
    "roi": 33.3,     # (200 - 150) / 150 * 100 = 33.33...
    "cpa": 150.0,
    "currency": "USD",
}
C4_STAT = {
    "id": "120004", "name": "Old Archive", "status": "ARCHIVED", "spend": 0.0, "impressions": 0, "clicks": 0,
    "leads": 0, "opportunities": 0, "revenue": 0.0, "roi": None, "cpa": None, "currency": "USD",
}


def test_the_stats_of_march_match_the_hand_computed_figures(alice_api, golden):
    assert data_of(alice_api.get(f"/crm/marketing/stats?{MARCH}")) == GOLDEN_STATS


def test_the_roi_report_lists_the_campaigns_active_in_march_by_spend_with_the_account_totals(alice_api, golden):
    assert data_of(alice_api.get(f"/crm/marketing/stats/roi?{MARCH}")) == {
        "campaigns": [C1_STAT, C3_STAT, C2_STAT],  # 170.75 > 150 > 80; C4 had nothing in March
        "time_period": "custom",
        "period": MARCH_PERIOD,
        "total_spend": 400.75,
        "total_revenue": 1800.0,
        "average_roi": 349.2,  # the ROI of the totals, as on the stats endpoint
        "currency": "USD",
        "currency_mismatch": False,
        "unconverted_currencies": [],
    }


def zero_points(since: date, days: int) -> dict[date, dict]:
    return {since + timedelta(days=i): {"date": (since + timedelta(days=i)).isoformat(), "spend": 0.0, "leads": 0, "opportunities": 0, "revenue": 0.0}
            for i in range(days)}


def test_the_timeseries_has_one_point_per_day_of_march(alice_api, golden):
    points = zero_points(date(2025, 3, 1), 31)
    for day, figures in {
        1: {"spend": 100.0, "leads": 1},        # C1 a1; L5 at 00:10
        2: {"leads": 1},                        # L1
        3: {"opportunities": 1},                # Op1
        5: {"spend": 100.0, "opportunities": 1},  # C3 500 BRL; Op3 (organic O1 not counted)
        10: {"spend": 80.0, "leads": 1, "revenue": 1200.0},  # C2; L3; S1
        12: {"opportunities": 1},               # Op2
        15: {"spend": 50.5},                    # C1 a1 (S2 refunded)
        20: {"spend": 50.0, "leads": 1, "revenue": 300.0},  # C3 250 BRL; L4; S3
        21: {"opportunities": 1},               # Op4
        25: {"revenue": 200.0},                 # S4 1000 BRL
        28: {"revenue": 100.0},                 # S5
        31: {"spend": 20.25, "leads": 1},       # C1 a2; L2 at 23:30 local
    }.items():
        points[date(2025, 3, day)].update(figures)

    assert data_of(alice_api.get(f"/crm/marketing/stats/timeseries?{MARCH}")) == list(points.values())


def test_the_timeseries_of_one_campaign_has_only_its_figures(alice_api, golden):
    points = zero_points(date(2025, 3, 1), 31)
    points[date(2025, 3, 5)].update({"spend": 100.0})
    points[date(2025, 3, 20)].update({"spend": 50.0, "leads": 1})
    points[date(2025, 3, 21)].update({"opportunities": 1})
    points[date(2025, 3, 25)].update({"revenue": 200.0})

    assert data_of(alice_api.get(f"/crm/marketing/stats/timeseries?{MARCH}&campaign_id=120003")) == list(points.values())


def test_a_timeseries_longer_than_92_days_has_one_point_per_iso_week_labelled_by_its_monday(alice_api, golden):
    # 2025-01-01..2025-04-30 is 120 days: weeks from Monday 2024-12-30 to Monday 2025-04-28 (18 weeks).
    weeks = {date(2024, 12, 30) + timedelta(weeks=i): {"date": (date(2024, 12, 30) + timedelta(weeks=i)).isoformat(),
                                                       "spend": 0.0, "leads": 0, "opportunities": 0, "revenue": 0.0} for i in range(18)}
    weeks[date(2025, 1, 27)].update({"spend": 1000.0})                                # C1 on 01-28
    weeks[date(2025, 2, 10)].update({"spend": 200.0, "leads": 1})                     # C4 02-10; L8 02-15
    weeks[date(2025, 2, 24)].update({"spend": 120.0, "leads": 3, "opportunities": 1, "revenue": 400.0})  # 20 (C3 02-28) + 100 (03-01); L7 L5 L1; Op5; S6
    weeks[date(2025, 3, 3)].update({"spend": 100.0, "opportunities": 2})              # C3 03-05; Op1 Op3
    weeks[date(2025, 3, 10)].update({"spend": 130.5, "leads": 1, "opportunities": 1, "revenue": 1200.0})  # 80 + 50.50; L3; Op2; S1
    weeks[date(2025, 3, 17)].update({"spend": 50.0, "leads": 1, "opportunities": 1, "revenue": 300.0})    # C3 03-20; L4; Op4; S3
    weeks[date(2025, 3, 24)].update({"revenue": 300.0})                               # S4 200 + S5 100
    weeks[date(2025, 3, 31)].update({"spend": 1019.25, "leads": 2, "opportunities": 1, "revenue": 999.0})  # 20.25 + 999; L2 L6; Op6; S7

    assert data_of(alice_api.get("/crm/marketing/stats/timeseries?since=2025-01-01&until=2025-04-30")) == list(weeks.values())


def test_without_an_exchange_rate_the_brl_amounts_are_left_out_and_the_stats_say_so(alice_api, golden, acme):
    ExchangeRate.objects.filter(account=acme).delete()

    assert data_of(alice_api.get(f"/crm/marketing/stats?{MARCH}")) == {
        **GOLDEN_STATS,
        # Current: spend 400.75 - 150 (C3) = 250.75; revenue 1800 - 200 (S4) = 1600; L4 is still a customer (3).
        # Previous: spend 220 - 20 (C3) = 200; revenue 400.
        "sales_revenue": 1600.0,
        "revenue_change": 300.0,          # (1600 - 400) / 400 * 100
        "marketing_spend": 250.75,
        "spend_change": 25.4,             # (250.75 - 200) / 200 * 100 = 25.375, half up
        # Ratios of money would divide a part of the money by all the customers or leads: undefined.
        "roi_percentage": None,
        "roi_change": None,
        "cpa": None,
        "cost_per_lead": None,
        "currency_mismatch": True,
        "unconverted_currencies": ["BRL"],
    }
    roi = data_of(alice_api.get(f"/crm/marketing/stats/roi?{MARCH}"))
    assert roi["campaigns"] == [C1_STAT, C2_STAT, {**C3_STAT, "spend": 0.0, "revenue": 0.0, "roi": None, "cpa": None}]
    assert (roi["total_spend"], roi["total_revenue"], roi["average_roi"], roi["currency_mismatch"], roi["unconverted_currencies"]) == (
        250.75, 1600.0, None, True, ["BRL"])


def test_a_rate_entered_the_other_way_round_converts_with_its_inverse(alice_api, golden, acme):
    # Alice types the rate as it is quoted: 1 USD = 5 BRL. BRL amounts are then worth 1 / 5 = 0.20 USD each,
    # the golden rate, so every figure is the hand-computed one and nothing is left unconverted.
    ExchangeRate.objects.filter(account=acme).delete()
    ExchangeRate.objects.create(account=acme, from_currency="USD", to_currency="BRL", rate=Decimal("5"))

    assert data_of(alice_api.get(f"/crm/marketing/stats?{MARCH}")) == GOLDEN_STATS
    assert data_of(alice_api.get(f"/crm/marketing/stats/roi?{MARCH}"))["campaigns"] == [C1_STAT, C3_STAT, C2_STAT]

    # A row in the wanted direction wins over the inverse of another.
    ExchangeRate.objects.create(account=acme, from_currency="BRL", to_currency="USD", rate=Decimal("0.10"))
    stats = data_of(alice_api.get(f"/crm/marketing/stats?{MARCH}"))
    assert (stats["marketing_spend"], stats["sales_revenue"]) == (325.75, 1700.0)  # 250.75 + 750 * 0.10; 1600 + 100


def test_a_loss_too_small_to_show_reads_0_0_percent_never_minus_0_0(alice_api, acme):
    spring = make_campaign(make_ad_account(acme, "act_usd", "USD", selected=True), "120001", "Spring Leads")
    make_insight(spring, "a1", date(2025, 3, 10), "10000.00", 100000, 1000)
    lead = make_lead(acme, lead_source="meta_lead_ads", meta_campaign_id="120001", created_at=local(3, 10))
    make_sale(lead, "9999.99", closed_at=local(3, 20))

    stats = data_of(alice_api.get(f"/crm/marketing/stats?{MARCH}"))
    roi = data_of(alice_api.get(f"/crm/marketing/stats/roi?{MARCH}"))

    # (9999.99 - 10000) / 10000 * 100 = -0.0001 %: 0.0 once rounded to one decimal, with no sign (JSON "-0.0"
    # would show as "-0.0 %" in the hub).
    figures = [stats["roi_percentage"], roi["average_roi"], roi["campaigns"][0]["roi"]]
    assert [str(value) for value in figures] == ["0.0", "0.0", "0.0"]


def test_the_7d_window_is_the_seven_days_ending_today_in_the_accounts_timezone(alice_api, acme):
    today = timezone.localdate(timezone=BA)
    usd = make_ad_account(acme, "act_usd", "USD", selected=True)
    campaign = make_campaign(usd, "777", "Now")
    make_insight(campaign, "n1", today, "10.00")
    make_insight(campaign, "n1", today - timedelta(days=6), "5.00")
    make_insight(campaign, "n1", today - timedelta(days=7), "40.00")  # the previous period's last day
    make_lead(acme, lead_source="meta_lead_ads", meta_campaign_id="777", created_at=timezone.now())
    make_lead(acme, lead_source="meta_ctwa", meta_campaign_id="777", created_at=datetime.combine(today - timedelta(days=7), datetime.min.time(), tzinfo=BA) + timedelta(hours=12))

    assert data_of(alice_api.get("/crm/marketing/stats?time_range=7d")) == {
        "leads": 1, "leads_change": 0.0,                   # 1 now, 1 in the previous 7 days
        "opportunities": 0, "opportunities_change": None,
        "sales_revenue": 0.0, "revenue_change": None,
        "marketing_spend": 15.0, "spend_change": -62.5,    # 10 + 5 vs 40: (15 - 40) / 40 * 100
        "roi_percentage": -100.0, "roi_change": 0.0,       # -100 - -100
        "cpa": None, "cost_per_lead": 15.0,
        "currency": "USD", "currency_mismatch": False, "unconverted_currencies": [],
        "time_range": "7d",
        "period": {"since": (today - timedelta(days=6)).isoformat(), "until": today.isoformat(), "complete": False},
        "previous_period": {"since": (today - timedelta(days=13)).isoformat(), "until": (today - timedelta(days=7)).isoformat(),
                            "complete": True},
        "meta_connected": False, "last_synced_at": None, "connect_url": CONNECT_URL,
    }


def test_a_range_ending_today_says_its_period_is_still_running_and_the_days_before_today_are_complete(alice_api, acme):
    today = timezone.localdate(timezone=BA)

    running = data_of(alice_api.get("/crm/marketing/stats?time_range=30d"))
    complete = data_of(alice_api.get("/crm/marketing/stats?time_range=last_30d"))  # the hub's default
    roi = data_of(alice_api.get("/crm/marketing/stats/roi?time_range=this_month"))

    def days_ago(n: int) -> str:
        return (today - timedelta(days=n)).isoformat()

    assert (running["period"], running["previous_period"]) == (
        {"since": days_ago(29), "until": days_ago(0), "complete": False},  # today so far
        {"since": days_ago(59), "until": days_ago(30), "complete": True},
    )
    assert (complete["period"], complete["previous_period"]) == (
        {"since": days_ago(30), "until": days_ago(1), "complete": True},
        {"since": days_ago(60), "until": days_ago(31), "complete": True},
    )
    assert roi["period"] == {"since": today.replace(day=1).isoformat(), "until": days_ago(0), "complete": False}


def test_lifetime_runs_from_the_first_insight_and_counts_everything(alice_api, golden):
    today = timezone.localdate(timezone=BA)
    days = (today - date(2025, 1, 28)).days + 1  # the C1 insight of 01-28 is the earliest activity
    previous_until = date(2025, 1, 27)

    data = data_of(alice_api.get("/crm/marketing/stats?time_range=lifetime"))

    assert data == {
        **GOLDEN_STATS,
        "leads": 8, "leads_change": None,                      # L1..L8 (not O1); nothing before 01-28
        "opportunities": 6, "opportunities_change": None,      # Op1..Op6
        "sales_revenue": 3199.0, "revenue_change": None,       # 1200 + 300 + 200 + 100 + 400 + 999
        "marketing_spend": 2619.75, "spend_change": None,      # 400.75 + 999 + 1000 + 200 + 20
        "roi_percentage": 22.1, "roi_change": None,            # (3199 - 2619.75) / 2619.75 * 100 = 22.11...
        "cpa": 654.94,                                         # 2619.75 / 4 (L1 L8 L4 L7) = 654.9375
        "cost_per_lead": 327.47,                               # 2619.75 / 8 = 327.46875, half up
        "time_range": "lifetime",
        "period": {"since": "2025-01-28", "until": today.isoformat(), "complete": False},
        "previous_period": {"since": (previous_until - timedelta(days=days - 1)).isoformat(), "until": previous_until.isoformat(),
                            "complete": True},
    }


def test_without_a_meta_connection_the_stats_still_count_crm_leads_and_revenue(alice_api, acme):
    lead = make_lead(acme, lead_source="meta_ctwa", meta_campaign_id="555", created_at=local(3, 4))
    make_sale(lead, "250.00", closed_at=local(3, 6))

    assert data_of(alice_api.get(f"/crm/marketing/stats?{MARCH}")) == {
        "leads": 1, "leads_change": None, "opportunities": 0, "opportunities_change": None,
        "sales_revenue": 250.0, "revenue_change": None, "marketing_spend": 0.0, "spend_change": None,
        "roi_percentage": None, "roi_change": None,
        "cpa": 0.0, "cost_per_lead": 0.0,  # 0 spend / 1 customer, 0 spend / 1 lead: defined, only a 0 divisor is null
        "currency": "USD", "currency_mismatch": False, "unconverted_currencies": [],
        "time_range": "custom", "period": MARCH_PERIOD, "previous_period": PREVIOUS_PERIOD,
        "meta_connected": False, "last_synced_at": None, "connect_url": CONNECT_URL,
    }


def test_a_connection_that_needs_reconnecting_is_not_connected(alice_api, acme):
    connection = connect_meta(acme, ad_account=None)
    connection.status = MetaConnection.Status.NEEDS_RECONNECT
    connection.save()

    data = data_of(alice_api.get(f"/crm/marketing/stats?{MARCH}"))

    assert (data["meta_connected"], data["connect_url"]) == (False, CONNECT_URL)


def test_mallory_sees_none_of_acmes_figures(mallory_api, golden):
    assert data_of(mallory_api.get(f"/crm/marketing/stats?{MARCH}")) == {
        "leads": 0, "leads_change": None, "opportunities": 0, "opportunities_change": None,
        "sales_revenue": 0.0, "revenue_change": None, "marketing_spend": 0.0, "spend_change": None,
        "roi_percentage": None, "roi_change": None, "cpa": None, "cost_per_lead": None,
        "currency": "EUR", "currency_mismatch": False, "unconverted_currencies": [],
        "time_range": "custom", "period": MARCH_PERIOD, "previous_period": PREVIOUS_PERIOD,
        "meta_connected": False, "last_synced_at": None, "connect_url": CONNECT_URL,
    }
    assert data_of(mallory_api.get(f"/crm/marketing/stats/roi?{MARCH}")) == {
        "campaigns": [], "time_period": "custom", "period": MARCH_PERIOD, "total_spend": 0.0, "total_revenue": 0.0,
        "average_roi": None, "currency": "EUR", "currency_mismatch": False, "unconverted_currencies": [],
    }
    assert data_of(mallory_api.get(f"/crm/marketing/stats/timeseries?{MARCH}")) == list(zero_points(date(2025, 3, 1), 31).values())


def test_mallory_cannot_chart_one_of_acmes_campaigns(mallory_api, golden):
    response = mallory_api.get(f"/crm/marketing/stats/timeseries?{MARCH}&campaign_id=120001")

    assert response.status_code == 404
    assert response.json() == {"success": False, "error": {"code": "not_found", "message": "Not found.", "fields": {}}}


@pytest.mark.parametrize("path", ["stats", "stats/roi", "stats/timeseries", "campaigns", "campaigns/120001", "campaigns/120001/insights"])
def test_sellers_cannot_read_the_marketing_figures(bob_api, golden, path):
    response = bob_api.get(f"/crm/marketing/{path}")

    assert response.status_code == 403
    assert response.json() == {"success": False, "error": {
        "code": "permission_denied", "message": "The seller role cannot use this endpoint.", "fields": {},
    }}


@pytest.mark.parametrize("path", ["stats", "stats/roi", "stats/timeseries", "campaigns"])
def test_anonymous_callers_get_401(anonymous_api, path):
    assert anonymous_api.get(f"/crm/marketing/{path}").status_code == 401
