"""The stats cache (marketing/services/stats_cache.py): a repeated read skips the rollup, and any write
that moves a figure makes the very next read exact again.

On the golden dataset of tests/test_stats.py (March 2025 in acme, hand-computed figures). Every test
first reads once, so the figures are cached, then writes and reads again. The insights sync, the admin
and the rebuild paths are also read before and after a write in tests/test_roi_rollups.py, with the
cache on as it is in every test.
"""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm_marketing.models import Lead, Sale
from marketing.models import AccountDay, AdAccount, Campaign, CampaignDay, CampaignToDate, CampaignTotal, ExchangeRate, RepeatSale, RollupVersion
from marketing.services import rollup_marks, rollups, stats_cache
from marketing.services.insight_store import COLUMNS, upsert_insights
from marketing.stats import Converter, Scope, collect
from marketing.time_ranges import Window
from meta_oauth.models import MetaConnection
from tests.test_stats import C1_STAT, GOLDEN_STATS, MARCH, build_golden, data_of, local

pytestmark = pytest.mark.django_db
STATS = f"/crm/marketing/stats?{MARCH}"


@pytest.fixture
def golden(acme):
    campaigns = build_golden(acme)
    rollup_marks.fold_account(acme.pk)  # the worker folds the dataset's writes into the rollups
    return campaigns


ROLLUP_TABLES = [model._meta.db_table for model in (AccountDay, CampaignDay, CampaignToDate, CampaignTotal, RepeatSale, Sale)]


def read_counting_rollup_queries(api, url: str) -> tuple[dict, int]:
    """The answer's data and how many queries read the rollups (or the sales) to answer it."""
    with CaptureQueriesContext(connection) as queries:
        data = data_of(api.get(url))
    return data, sum(any(f'"{table}"' in q["sql"] for table in ROLLUP_TABLES) for q in queries)


def cached_read(api, url: str) -> dict:
    """Read twice; the second answer must come from the cache (no rollup query). Returns its data."""
    first, _ = read_counting_rollup_queries(api, url)
    second, rollup_reads = read_counting_rollup_queries(api, url)
    assert (second, rollup_reads) == (first, 0)
    return second


def test_a_repeated_read_is_answered_from_the_cache_without_reading_the_rollup_or_the_sales(alice_api, golden):
    first, first_reads = read_counting_rollup_queries(alice_api, STATS)
    second, second_reads = read_counting_rollup_queries(alice_api, STATS)

    assert first == second == GOLDEN_STATS
    assert (first_reads, second_reads) == (2, 0)  # the account's days and its repeat sales, then neither


def test_a_sale_recorded_after_a_cached_read_is_in_the_next_read_to_the_cent(alice_api, golden, acme):
    assert cached_read(alice_api, STATS) == GOLDEN_STATS
    l1 = Lead.objects.get(account=acme, created_at=local(3, 2, 10))

    created = alice_api.post("/crm/sales", {"lead": l1.pk, "amount": "250.00", "closed_at": local(3, 29).isoformat()}, format="json")
    moved = data_of(alice_api.get(STATS))

    assert created.status_code == 201
    assert moved == {**GOLDEN_STATS, "sales_revenue": 2050.0, "revenue_change": 412.5, "roi_percentage": 411.5, "roi_change": 329.7}


def test_a_sale_moved_by_hand_to_another_lead_of_the_same_campaign_changes_the_cpa_of_the_next_read(alice_api, golden, acme):
    # S5 (L1, C1, 100.00 on March 28th) goes to L2 (also C1), as a data fix in the shell or the admin would
    # (the API refuses it): no rollup cell moves, but L2 becomes a fourth customer, so cpa = 400.75 / 4 = 100.1875.
    assert cached_read(alice_api, STATS) == GOLDEN_STATS
    s5 = Sale.objects.get(account=acme, closed_at=local(3, 28))

    s5.lead = Lead.objects.get(account=acme, created_at=local(3, 31, 23, 30))
    s5.save()

    assert data_of(alice_api.get(STATS)) == {**GOLDEN_STATS, "cpa": 100.19}


def test_a_meta_lead_created_after_a_cached_read_is_counted_in_the_next_roi_report(alice_api, golden, acme):
    this_week = "/crm/marketing/stats/roi?time_range=7d"  # a lead is created now: the golden March is long past
    before = cached_read(alice_api, this_week)

    response = alice_api.post("/crm/leads", {"first_name": "Nueva", "email": "nueva@example.com", "lead_source": "meta_lead_ads", "meta_campaign_id": "120001"},
                              format="json")
    after = data_of(alice_api.get(this_week))

    assert response.status_code == 201, response.content
    assert (before["campaigns"], after["total_spend"], after["total_revenue"]) == ([], 0.0, 0.0)
    assert after["campaigns"] == [{**C1_STAT, "spend": 0.0, "impressions": 0, "clicks": 0, "leads": 1, "opportunities": 0,
                                   "revenue": 0.0, "roi": None, "cpa": None}]


def test_an_insights_upsert_after_a_cached_read_moves_the_spend_of_the_next_read(alice_api, golden, acme):
    assert cached_read(alice_api, STATS) == GOLDEN_STATS
    c1 = golden["C1"]
    row = dict(account_id=acme.pk, ad_account_id=c1.ad_account_id, meta_campaign_id="120001", meta_adset_id="120001-set",
               meta_ad_id="a1", date=dt.date(2025, 3, 15), currency="USD", spend=Decimal("60.50"), impressions=6000, clicks=120,
               link_clicks=0, reach=0, leads=0, synced_at=timezone.now())

    upsert_insights([tuple(row[name] for name in COLUMNS)])  # Meta restated March 15th: 50.50 -> 60.50

    assert data_of(alice_api.get(STATS)) == {
        **GOLDEN_STATS,
        "marketing_spend": 410.75,
        "spend_change": 86.7,         # (410.75 - 220) / 220 * 100 = 86.70...
        "roi_percentage": 338.2,      # (1800 - 410.75) / 410.75 * 100 = 338.22...
        "roi_change": 256.4,          # 338.2228 - 81.8182
        "cpa": 136.92,                # 410.75 / 3
        "cost_per_lead": 82.15,       # 410.75 / 5
    }


def test_a_new_exchange_rate_is_used_by_the_next_read_without_any_rollup_write(alice_api, golden, acme):
    assert cached_read(alice_api, STATS) == GOLDEN_STATS
    token = RollupVersion.objects.get(account=acme).token

    ExchangeRate.objects.filter(account=acme, from_currency="BRL").update(rate=Decimal("0.25"))

    # spend 250.75 + 750 * 0.25 = 438.25; revenue 1600 + 1000 * 0.25 = 1850; previous spend 200 + 100 * 0.25 = 225
    assert data_of(alice_api.get(STATS)) == {
        **GOLDEN_STATS,
        "sales_revenue": 1850.0, "revenue_change": 362.5,
        "marketing_spend": 438.25, "spend_change": 94.8,     # (438.25 - 225) / 225 * 100 = 94.777...
        "roi_percentage": 322.1,                             # (1850 - 438.25) / 438.25 * 100 = 322.13...
        "roi_change": 244.4,                                 # 322.1335 - (400 - 225) / 225 * 100 = 322.1335 - 77.7778 = 244.3557
        "cpa": 146.08, "cost_per_lead": 87.65,
    }
    assert RollupVersion.objects.get(account=acme).token == token  # the rates are part of the key, not of the version


def test_every_transaction_that_writes_the_rollup_gives_it_a_new_version_and_a_rolled_back_one_does_not(golden, acme):
    first = RollupVersion.objects.get(account=acme).token
    rollups.refresh_crm_days(acme.pk, [dt.date(2025, 3, 2)])
    second = RollupVersion.objects.get(account=acme).token
    try:
        with transaction.atomic():
            rollups.rebuild(acme)
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass

    assert first != second
    assert RollupVersion.objects.get(account=acme).token == second


def test_mallory_reading_the_same_url_gets_globex_figures_not_acmes_cached_ones(alice_api, mallory_api, golden):
    assert cached_read(alice_api, STATS) == GOLDEN_STATS

    theirs = data_of(mallory_api.get(STATS))

    assert (theirs["leads"], theirs["sales_revenue"], theirs["marketing_spend"], theirs["currency"]) == (0, 0.0, 0.0, "EUR")


@override_settings(CACHES={"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:9/0",
                                       "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5}}})
def test_with_the_cache_unreachable_the_figures_are_computed_and_still_exact(golden, acme):
    scope = Scope(acme, Converter.for_account(acme))

    (march,) = collect(scope, [Window(dt.date(2025, 3, 1), dt.date(2025, 3, 31))])

    assert (march["total"].leads, march["total"].revenue, march["total"].customers) == (5, Decimal("1800.00"), 3)


@override_settings(STATS_CACHE_SECONDS=0)
def test_with_the_cache_turned_off_every_read_reads_the_rollup(alice_api, golden):
    reads = [read_counting_rollup_queries(alice_api, STATS) for _ in range(2)]

    assert reads == [(GOLDEN_STATS, 2), (GOLDEN_STATS, 2)]


def test_an_account_without_a_rollup_version_is_read_without_the_cache(alice_api, golden, acme):
    RollupVersion.objects.filter(account=acme).delete()

    reads = [read_counting_rollup_queries(alice_api, STATS) for _ in range(2)]

    assert reads == [(GOLDEN_STATS, 2), (GOLDEN_STATS, 2)]


def test_the_cache_keys_on_the_version_token_and_never_serves_an_entry_of_another(golden, acme):
    computed = []

    def compute():
        computed.append(1)
        return len(computed)

    first = stats_cache.cached(acme.pk, ("probe",), compute)
    again = stats_cache.cached(acme.pk, ("probe",), compute)
    stats_cache.rollup_changed(acme.pk)
    after_write = stats_cache.cached(acme.pk, ("probe",), compute)

    assert (first, again, after_write) == (1, 1, 2)


# -- the rendered answers of the hub's reads (marketing/views/stats.py) -----------------------------------------
HUB_READS = [STATS, f"/crm/marketing/stats/roi?{MARCH}", f"/crm/marketing/stats/timeseries?{MARCH}",
             f"/crm/marketing/campaigns?{MARCH}&ordering=-roi&limit=1&offset=1"]


def without_timestamp(response) -> bytes:
    """The body with its timestamp blanked: the one part of the envelope that is not the answer's."""
    body = response.content
    stamp = json.loads(body)["timestamp"].encode()
    assert body.count(stamp) == 1
    return body.replace(stamp, b"T")


@pytest.mark.parametrize("url", HUB_READS)
def test_a_cached_answer_is_byte_for_byte_the_computed_one(alice_api, golden, settings, url):
    settings.STATS_CACHE_SECONDS = 0
    computed = alice_api.get(url)
    settings.STATS_CACHE_SECONDS = 600
    alice_api.get(url)

    with CaptureQueriesContext(connection) as queries:
        cached = alice_api.get(url)

    assert (computed.status_code, cached.status_code, cached["Content-Type"]) == (200, 200, "application/json")
    assert without_timestamp(cached) == without_timestamp(computed)
    assert not any(f'"{table}"' in q["sql"] for q in queries for table in ROLLUP_TABLES)


def test_the_same_read_asked_with_indented_json_is_answered_indented(alice_api, golden):
    compact = alice_api.get(STATS)

    indented = alice_api.get(STATS, HTTP_ACCEPT="application/json; indent=2")

    assert indented.content.startswith(b'{\n  "success": true,\n  "data": {\n')
    assert json.loads(indented.content)["data"] == json.loads(compact.content)["data"]


def test_a_rollup_write_after_a_cached_roi_report_changes_the_next_answer(alice_api, golden, acme):
    url = f"/crm/marketing/stats/roi?{MARCH}"
    before = cached_read(alice_api, url)
    sale = Sale.objects.filter(account=acme, status="completed").order_by("pk").first()

    sale.amount += Decimal("10.00")
    sale.save()

    after = data_of(alice_api.get(url))
    assert after["total_revenue"] == before["total_revenue"] + 10


def test_a_campaign_renamed_after_a_cached_read_shows_its_new_name_in_the_next_roi_report_and_page(alice_api, golden, acme):
    roi, page = f"/crm/marketing/stats/roi?{MARCH}", f"/crm/marketing/campaigns?{MARCH}"
    before = {c["id"]: c["name"] for c in cached_read(alice_api, roi)["campaigns"]}
    cached_read(alice_api, page)
    token = RollupVersion.objects.get(account=acme).token

    Campaign.objects.filter(account=acme, meta_campaign_id="120001").update(name="Otoño 2025")  # a sync renames it

    assert {c["id"]: c["name"] for c in data_of(alice_api.get(roi))["campaigns"]} == {**before, "120001": "Otoño 2025"}
    assert "Otoño 2025" in [c["name"] for c in data_of(alice_api.get(page))["results"]]
    assert RollupVersion.objects.get(account=acme).token == token  # the campaigns are part of the key, not of the version


def test_a_meta_connection_lost_after_a_cached_read_shows_in_the_next_stats_answer(alice_api, golden, acme):
    assert cached_read(alice_api, STATS)["meta_connected"] is True

    MetaConnection.objects.filter(account=acme).update(status=MetaConnection.Status.NEEDS_RECONNECT)

    after = data_of(alice_api.get(STATS))
    assert (after["meta_connected"], after["connect_url"]) == (False, "/crm/auth/meta/url")


def account_day_reads(api, url: str) -> tuple[dict, int]:
    """The answer's data and how many queries read AccountDay (what a cached stats read skips)."""
    with CaptureQueriesContext(connection) as queries:
        data = data_of(api.get(url))
    return data, sum(f'"{AccountDay._meta.db_table}"' in q["sql"] for q in queries)


def test_a_lead_the_worker_has_not_folded_yet_is_added_to_the_cached_figures_and_counted_once_after_the_fold(
        alice_api, golden, acme):
    # A write only marks its cells: the version stays, the cached rollup figures are served and the marked day
    # is recomputed on top. The fold writes the cells under a new version: the next read misses, and counts the
    # lead once (the entry cached before the fold never had the correction in it).
    assert cached_read(alice_api, STATS) == GOLDEN_STATS
    version = RollupVersion.objects.get(account=acme).token
    Lead.objects.create(account=acme, first_name="Tardía", phone="+5491155559901", lead_source="meta_lead_ads",
                        meta_campaign_id="120001", created_at=local(3, 20))
    with_six = {**GOLDEN_STATS, "leads": 6, "leads_change": 200.0, "cost_per_lead": 66.79}  # 400.75 / 6

    marked, marked_day_reads = account_day_reads(alice_api, STATS)
    version_while_marked = RollupVersion.objects.get(account=acme).token
    rollup_marks.fold_account(acme.pk)
    folded, folded_day_reads = account_day_reads(alice_api, STATS)
    again, again_day_reads = account_day_reads(alice_api, STATS)

    assert marked == folded == again == with_six
    assert (version_while_marked, marked_day_reads) == (version, 0)  # served from the entry cached before the lead
    assert RollupVersion.objects.get(account=acme).token != version and folded_day_reads > 0 and again_day_reads == 0


def test_a_cached_hub_read_checks_everything_its_answer_shows_in_one_query(alice_api, golden):
    # A hit must still prove nothing changed (version, marks, rates, connection, campaign names): one statement
    # reads all of it, instead of fetching every campaign row and six other queries on every read.
    url = f"/crm/marketing/campaigns?{MARCH}"
    cached_read(alice_api, url)
    with CaptureQueriesContext(connection) as queries:
        assert alice_api.get(url).status_code == 200
    touching = [q["sql"] for q in queries if any(f'"{model._meta.db_table}"' in q["sql"] for model in
                                                 (Campaign, ExchangeRate, RollupVersion, MetaConnection))]
    assert len(touching) == 1 and len(queries) <= 3  # the session's user and membership, then the state


def test_a_campaign_paused_after_a_cached_page_of_active_ones_leaves_the_next_page(alice_api, golden, acme):
    url = f"/crm/marketing/campaigns?{MARCH}&status=ACTIVE"
    assert "120001" in [c["id"] for c in cached_read(alice_api, url)["results"]]

    Campaign.objects.filter(account=acme, meta_campaign_id="120001").update(status="PAUSED")  # a sync sees it paused

    assert "120001" not in [c["id"] for c in data_of(alice_api.get(url))["results"]]


def test_an_insights_sync_finishing_after_a_cached_read_shows_its_time_in_the_next_stats_answer(alice_api, golden, acme):
    before = cached_read(alice_api, STATS)
    synced_at = timezone.now().replace(microsecond=0)

    AdAccount.objects.filter(account=acme).update(last_synced_at=synced_at)

    after = data_of(alice_api.get(STATS))
    assert after["last_synced_at"] != before["last_synced_at"]
    assert dt.datetime.fromisoformat(after["last_synced_at"].replace("Z", "+00:00")) == synced_at
