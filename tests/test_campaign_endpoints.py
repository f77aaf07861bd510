"""GET campaigns, campaigns/{id} and campaigns/{id}/insights over the golden dataset of
tests/test_stats.py (its docstring lists every row; the figures below are worked out by hand)."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.test_stats import C1_STAT, C2_STAT, C3_STAT, C4_STAT, MARCH, MARCH_PERIOD, build_golden, data_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def golden(acme):
    return build_golden(acme)


def page(results: list, total: int, limit: int = 50, offset: int = 0) -> dict:
    return {"results": results, "total": total, "limit": limit, "offset": offset, "currency_mismatch": False, "unconverted_currencies": []}


def test_the_campaign_list_is_ordered_by_spend_by_default(alice_api, golden):
    assert data_of(alice_api.get(f"/crm/marketing/campaigns?{MARCH}")) == page([C1_STAT, C3_STAT, C2_STAT, C4_STAT], 4)


def test_the_campaign_list_orders_by_roi_with_undefined_rois_last_either_way(alice_api, golden):
    # ROI: C1 837.0, C3 33.3, C2 -100.0, C4 undefined (no spend).
    assert data_of(alice_api.get(f"/crm/marketing/campaigns?{MARCH}&ordering=-roi")) == page([C1_STAT, C3_STAT, C2_STAT, C4_STAT], 4)
    assert data_of(alice_api.get(f"/crm/marketing/campaigns?{MARCH}&ordering=roi")) == page([C2_STAT, C3_STAT, C1_STAT, C4_STAT], 4)


def test_the_campaign_list_orders_by_name_leads_and_revenue(alice_api, golden):
    assert data_of(alice_api.get(f"/crm/marketing/campaigns?{MARCH}&ordering=name")) == page([C3_STAT, C4_STAT, C1_STAT, C2_STAT], 4)
    # leads: C1 3, then C2 and C3 with 1 each (by name: Brazil Reach, WhatsApp Promo), C4 0.
    assert data_of(alice_api.get(f"/crm/marketing/campaigns?{MARCH}&ordering=-leads")) == page([C1_STAT, C3_STAT, C2_STAT, C4_STAT], 4)
    # revenue ascending: C2 0 and C4 0 (by name: Old Archive, WhatsApp Promo), C3 200, C1 1600.
    assert data_of(alice_api.get(f"/crm/marketing/campaigns?{MARCH}&ordering=revenue")) == page([C4_STAT, C2_STAT, C3_STAT, C1_STAT], 4)


def test_the_campaign_list_filters_by_status_and_pages_with_limit_and_offset(alice_api, golden):
    assert data_of(alice_api.get(f"/crm/marketing/campaigns?{MARCH}&status=ACTIVE")) == page([C1_STAT, C3_STAT], 2)
    assert data_of(alice_api.get(f"/crm/marketing/campaigns?{MARCH}&limit=2&offset=1")) == page([C3_STAT, C2_STAT], 4, limit=2, offset=1)


def test_the_campaign_list_defaults_to_the_last_30_days(alice_api, golden):
    # All the golden activity is in 2025: nothing falls in the 30 days ending today.
    zero = {"spend": 0.0, "impressions": 0, "clicks": 0, "leads": 0, "opportunities": 0, "revenue": 0.0, "roi": None, "cpa": None}
    by_name = [{**stat, **zero} for stat in (C3_STAT, C4_STAT, C1_STAT, C2_STAT)]  # all spend 0: by name

    assert data_of(alice_api.get("/crm/marketing/campaigns")) == page(by_name, 4)


@pytest.mark.parametrize(("query", "fields"), [
    ("ordering=cost", {"ordering": ["Allowed: spend, revenue, roi, leads, name (prefix - for descending)."]}),
    ("status=RUNNING", {"status": ['"RUNNING" is not a valid choice.']}),
    ("limit=0", {"limit": ["Ensure this value is greater than or equal to 1."]}),
    ("limit=201", {"limit": ["Ensure this value is less than or equal to 200."]}),
    ("offset=-1", {"offset": ["Ensure this value is greater than or equal to 0."]}),
])
def test_bad_campaign_list_parameters_are_a_400_on_the_field(alice_api, golden, query, fields):
    response = alice_api.get(f"/crm/marketing/campaigns?{query}")

    assert response.status_code == 400
    assert response.json() == {"success": False, "error": {"code": "validation_error", "message": "The request has invalid fields.", "fields": fields}}


def test_a_campaign_shows_its_settings_and_its_performance_in_the_window(alice_api, golden):
    assert data_of(alice_api.get(f"/crm/marketing/campaigns/120001?{MARCH}")) == {
        "id": "120001", "name": "Spring Leads", "objective": "OUTCOME_LEADS", "status": "ACTIVE",
        "daily_budget": 50.0,            # 5000 cents
        "lifetime_budget": None,
        "budget_currency": "USD",
        "start_time": "2025-02-01T03:00:00Z", "end_time": None,
        "performance": {
            "spend": 170.75, "impressions": 17000, "clicks": 330, "leads": 3, "opportunities": 2, "revenue": 1600.0,
            "roi_percentage": 837.0,     # (1600 - 170.75) / 170.75 * 100
            "cpa": 85.38,                # 170.75 / 2
            "cpc": 0.52,                 # 170.75 / 330 = 0.5174...
            "cpm": 10.04,                # 170.75 / 17000 * 1000 = 10.0441...
            "ctr": 1.9,                  # 330 / 17000 * 100 = 1.941...
        },
        "currency": "USD", "currency_mismatch": False, "unconverted_currencies": [],
        "time_range": "custom", "period": MARCH_PERIOD,
    }


def test_a_campaign_in_another_currency_keeps_its_budget_in_that_currency_and_converts_its_spend(alice_api, golden):
    data = data_of(alice_api.get(f"/crm/marketing/campaigns/120003?{MARCH}"))

    assert (data["daily_budget"], data["budget_currency"], data["currency"]) == (100.0, "BRL", "USD")  # 10000 centavos
    assert data["performance"] == {
        "spend": 150.0, "impressions": 30000, "clicks": 500, "leads": 1, "opportunities": 1, "revenue": 200.0,
        "roi_percentage": 33.3,          # (200 - 150) / 150 * 100
        "cpa": 150.0,
        "cpc": 0.3,                      # 150 / 500
        "cpm": 5.0,                      # 150 / 30000 * 1000
        "ctr": 1.7,                      # 500 / 30000 * 100 = 1.666...
    }


def test_a_paused_campaign_shows_its_lifetime_budget_and_end_time(alice_api, golden):
    data = data_of(alice_api.get(f"/crm/marketing/campaigns/120002?{MARCH}"))

    assert {k: data[k] for k in ("status", "daily_budget", "lifetime_budget", "start_time", "end_time")} == {
        "status": "PAUSED", "daily_budget": None, "lifetime_budget": 1500.0,  # 150000 cents
        "start_time": "2025-02-20T03:00:00Z", "end_time": "2025-04-30T03:00:00Z",
    }


def test_a_campaigns_insights_have_every_day_with_meta_and_crm_figures(alice_api, golden):
    days = {date(2025, 3, 1) + timedelta(days=i): {
        "date": (date(2025, 3, 1) + timedelta(days=i)).isoformat(), "spend": 0.0, "impressions": 0, "clicks": 0, "leads": 0,
        "opportunities": 0, "revenue": 0.0, "cpa": None, "cpc": None, "cpm": None, "ctr": None,
    } for i in range(15)}
    days[date(2025, 3, 1)].update({"spend": 100.0, "impressions": 10000, "clicks": 200, "leads": 1,  # L5
                                   "cpc": 0.5, "cpm": 10.0, "ctr": 2.0})  # 100/200, 100/10000*1000, 200/10000*100
    days[date(2025, 3, 2)].update({"leads": 1})          # L1
    days[date(2025, 3, 3)].update({"opportunities": 1})  # Op1
    days[date(2025, 3, 5)].update({"opportunities": 1})  # Op3 (L8 came from C1 in February)
    days[date(2025, 3, 10)].update({"revenue": 1200.0, "cpa": 0.0})  # S1: one customer, no spend that day
    days[date(2025, 3, 15)].update({"spend": 50.5, "impressions": 5000, "clicks": 100,
                                    "cpc": 0.51,          # 50.50 / 100 = 0.505, half up (a float would say 0.5)
                                    "cpm": 10.1, "ctr": 2.0})

    assert data_of(alice_api.get("/crm/marketing/campaigns/120001/insights?since=2025-03-01&until=2025-03-15")) == {
        "id": "120001", "name": "Spring Leads", "insights": list(days.values()),
        "time_range": "custom", "period": {"since": "2025-03-01", "until": "2025-03-15", "complete": True},
        "attribution_window": "7d_click_1d_view",
        "currency": "USD", "currency_mismatch": False, "unconverted_currencies": [],
    }


def test_an_unknown_campaign_id_is_a_404(alice_api, golden):
    for path in ("campaigns/999999", "campaigns/999999/insights"):
        response = alice_api.get(f"/crm/marketing/{path}")
        assert response.status_code == 404
        assert response.json() == {"success": False, "error": {"code": "not_found", "message": "Not found.", "fields": {}}}


def test_mallory_gets_404_on_acmes_campaigns_and_an_empty_list(mallory_api, golden):
    for path in ("campaigns/120001", "campaigns/120001/insights", "campaigns/120003?" + MARCH):
        response = mallory_api.get(f"/crm/marketing/{path}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    data = data_of(mallory_api.get(f"/crm/marketing/campaigns?{MARCH}"))
    assert data == {"results": [], "total": 0, "limit": 50, "offset": 0, "currency_mismatch": False, "unconverted_currencies": []}
