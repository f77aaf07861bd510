"""The ROI rollup (CampaignDay) the stats read: kept current by every write path, rebuilt at will.

The golden dataset of tests/test_stats.py (March 2025 in acme, UTC-3) is written with plain
Model.objects.create, so it exercises the model signals; the API, the admin, the insights sync, the
demo seed and the nightly task are each checked to move the figures the stats endpoints answer.
Writes mark their cells and a worker folds them (marketing.services.rollup_marks): ``rollup()`` reads
the table as the worker leaves it, after a fold.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import Client
from django.utils import timezone
from django_q.models import Schedule

from crm_marketing.demo import seed_demo, staff_group
from crm_marketing.models import Account, Lead, Sale
from marketing.models import CampaignDay, DailyInsight, ExchangeRate, SyncRun
from marketing.services import rollup_marks, rollups
from marketing.services.sync import sync_ad_account
from marketing.tasks import rebuild_all_roi_rollups, rebuild_recent_roi_rollups
from tests.conftest import make_lead, make_sale
from tests.test_stats import C1_STAT, C2_STAT, C3_STAT, GOLDEN_STATS, MARCH, build_golden, data_of, local
from tests.test_sync import FAST, ad_account, client, connection, meta_token  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db
D = dt.date
MEASURES = ("spend", "impressions", "clicks", "leads", "opportunities", "revenue")


@pytest.fixture
def golden(acme):
    return build_golden(acme)


def rollup(account: Account, **filters) -> list[tuple]:
    """The account's rollup rows as (day, campaign, currency, spend, impressions, clicks, leads, opportunities, revenue)
    once the worker has folded the marked cells (the sales counts are checked in tests/test_coarse_rollups.py)."""
    rollup_marks.fold_account(account.pk)
    return sorted(CampaignDay.objects.filter(account=account, **filters)
                  .values_list("day", "meta_campaign_id", "currency", *MEASURES))


def rebuilt_from_scratch(account: Account) -> list[tuple]:
    CampaignDay.objects.filter(account=account).delete()
    rollups.rebuild(account)
    return rollup(account)


def lead_of(account: Account, created_at: dt.datetime) -> Lead:
    return Lead.objects.get(account=account, created_at=created_at)


def test_the_golden_dataset_is_rolled_up_per_campaign_and_day(golden, acme):
    z = Decimal("0.00")
    # C1 "Spring Leads" (hand-computed from tests/test_stats.py): insights a1 a2; leads L1 L2 L5 L6 L8;
    # opportunities Op1 Op3 Op6; completed sales S1 S3 S5 S7 (all USD, on their UTC-3 days).
    assert rollup(acme, meta_campaign_id="120001") == [
        (D(2025, 1, 28), "120001", "USD", Decimal("1000.00"), 9000, 90, 0, 0, z),
        (D(2025, 2, 15), "120001", "USD", z, 0, 0, 1, 0, z),                        # L8
        (D(2025, 3, 1), "120001", "USD", Decimal("100.00"), 10000, 200, 1, 0, z),   # a1; L5 at 00:10
        (D(2025, 3, 2), "120001", "USD", z, 0, 0, 1, 0, z),                         # L1
        (D(2025, 3, 3), "120001", "USD", z, 0, 0, 0, 1, z),                         # Op1
        (D(2025, 3, 5), "120001", "USD", z, 0, 0, 0, 1, z),                         # Op3 (L8's)
        (D(2025, 3, 10), "120001", "USD", z, 0, 0, 0, 0, Decimal("1200.00")),       # S1
        (D(2025, 3, 15), "120001", "USD", Decimal("50.50"), 5000, 100, 0, 0, z),    # a1
        (D(2025, 3, 20), "120001", "USD", z, 0, 0, 0, 0, Decimal("300.00")),        # S3
        (D(2025, 3, 28), "120001", "USD", z, 0, 0, 0, 0, Decimal("100.00")),        # S5
        (D(2025, 3, 31), "120001", "USD", Decimal("20.25"), 2000, 30, 1, 0, z),     # a2; L2 at 23:30
        (D(2025, 4, 1), "120001", "USD", z, 0, 0, 1, 1, Decimal("999.00")),         # L6, Op6, S7
    ]
    # C3's spend and S4 stay in BRL: converted when read.
    assert rollup(acme, meta_campaign_id="120003", currency="BRL") == [
        (D(2025, 2, 28), "120003", "BRL", Decimal("100.00"), 2000, 20, 0, 0, z),
        (D(2025, 3, 5), "120003", "BRL", Decimal("500.00"), 20000, 400, 0, 0, z),
        (D(2025, 3, 20), "120003", "BRL", Decimal("250.00"), 10000, 100, 0, 0, z),
        (D(2025, 3, 25), "120003", "BRL", z, 0, 0, 0, 0, Decimal("1000.00")),
    ]
    # The organic lead O1, its opportunity and sale SO, and the refunded S2 are in no cell.
    assert not CampaignDay.objects.filter(account=acme, meta_campaign_id="").exists()
    assert rollup(acme) == rebuilt_from_scratch(acme)


def test_a_sale_recorded_through_the_api_moves_the_stats_and_its_refund_moves_them_back(alice_api, golden, acme):
    l1 = lead_of(acme, local(3, 2, 10))

    created = alice_api.post("/crm/sales", {"lead": l1.pk, "amount": "250.00", "closed_at": local(3, 29).isoformat()}, format="json")
    moved = data_of(alice_api.get(f"/crm/marketing/stats?{MARCH}"))
    refunded = alice_api.patch(f"/crm/sales/{created.json()['data']['id']}", {"status": "refunded"}, format="json")

    assert (created.status_code, refunded.status_code) == (201, 200)
    assert moved == {
        **GOLDEN_STATS,
        "sales_revenue": 2050.0,     # 1800 + 250 (L1 is already a customer: cpa unchanged)
        "revenue_change": 412.5,     # (2050 - 400) / 400 * 100
        "roi_percentage": 411.5,     # (2050 - 400.75) / 400.75 * 100 = 411.5408...
        "roi_change": 329.7,         # 411.5408 - 81.8182 = 329.7226 points
    }
    assert Sale.objects.get(pk=created.json()["data"]["id"]).lead_source == "meta_lead_ads"
    assert data_of(alice_api.get(f"/crm/marketing/stats?{MARCH}")) == GOLDEN_STATS
    assert rollup(acme) == rebuilt_from_scratch(acme)


def test_moving_a_lead_to_another_campaign_moves_its_opportunities_and_revenue_with_it(alice_api, golden, acme):
    l1 = lead_of(acme, local(3, 2, 10))

    response = alice_api.patch(f"/crm/leads/{l1.pk}", {"meta_campaign_id": "120002"}, format="json")

    assert response.status_code == 200
    assert set(Sale.objects.filter(lead=l1).values_list("lead_source", "meta_campaign_id")) == {("meta_lead_ads", "120002")}
    roi = data_of(alice_api.get(f"/crm/marketing/stats/roi?{MARCH}"))
    assert roi["campaigns"] == [
        {**C1_STAT, "leads": 2, "opportunities": 1, "revenue": 300.0,  # L2 L5; Op3; S3 (L8 the only customer)
         "roi": 75.7, "cpa": 170.75},                                  # (300 - 170.75) / 170.75 * 100 = 75.69...
        C3_STAT,
        {**C2_STAT, "leads": 2, "opportunities": 2, "revenue": 1300.0,  # + L1, Op1, S1 1200 + S5 100
         "roi": 1525.0, "cpa": 80.0},                                   # (1300 - 80) / 80 * 100; 80 / 1 customer
    ]
    assert (roi["total_spend"], roi["total_revenue"]) == (400.75, 1800.0)  # the account's totals do not move
    assert rollup(acme) == rebuilt_from_scratch(acme)


def test_a_sale_refunded_in_the_admin_leaves_the_revenue(alice, golden, acme):
    alice.groups.add(staff_group())
    s5 = Sale.objects.get(account=acme, amount=Decimal("100.00"))
    admin = Client()
    admin.force_login(alice)

    response = admin.post(f"/admin/crm_marketing/sale/{s5.pk}/change/", {
        "account": acme.pk, "lead": s5.lead_id, "opportunity": "", "amount": "100.00", "currency": "USD",
        "status": "refunded", "closed_at_0": "2025-03-28", "closed_at_1": "15:00:00"})  # local(3, 28) in UTC

    assert response.status_code == 302, response.content
    assert rollup(acme, meta_campaign_id="120001", day=D(2025, 3, 28)) == []
    assert rollup(acme) == rebuilt_from_scratch(acme)


def test_deleting_a_lead_takes_it_and_its_opportunities_out_of_the_figures(golden, acme):
    l2 = lead_of(acme, local(3, 31, 23, 30))  # C1, with Op6 on April 1st

    l2.delete()

    assert rollup(acme, meta_campaign_id="120001", day__gte=D(2025, 3, 31)) == [
        (D(2025, 3, 31), "120001", "USD", Decimal("20.25"), 2000, 30, 0, 0, Decimal("0.00")),
        (D(2025, 4, 1), "120001", "USD", Decimal("0.00"), 0, 0, 1, 0, Decimal("999.00")),  # L6 and S7 stay
    ]
    assert rollup(acme) == rebuilt_from_scratch(acme)


def test_rows_given_their_times_as_iso_strings_are_counted_on_their_local_day(acme):
    # Django models accept ISO strings (fixtures, scripts, the shell); the rollup must not trip over them.
    lead = make_lead(acme, lead_source="meta_lead_ads", meta_campaign_id="120001", created_at="2025-03-01T02:30:00Z")
    make_sale(lead, "80.00", closed_at="2025-03-02T01:00:00+00:00")

    z = Decimal("0.00")
    assert rollup(acme) == [
        (D(2025, 2, 28), "120001", "USD", z, 0, 0, 1, 0, z),                  # 23:30 on Feb 28th in Buenos Aires
        (D(2025, 3, 1), "120001", "USD", z, 0, 0, 0, 0, Decimal("80.00")),    # 22:00 on March 1st
    ]
    assert rollup(acme) == rebuilt_from_scratch(acme)


def test_a_write_that_rolls_back_leaves_the_rollup_as_it_was(golden, acme):
    before = rollup(acme)

    with pytest.raises(RuntimeError), transaction.atomic():
        make_sale(lead_of(acme, local(3, 2, 10)), "5000.00", closed_at=local(3, 12))
        raise RuntimeError("the request failed after the sale")

    assert rollup(acme) == before


def test_an_insights_sync_moves_the_spend(alice_api, acme, ad_account, client, meta_sandbox):  # noqa: F811
    ExchangeRate.objects.create(account=acme, from_currency="ARS", to_currency="USD", rate=Decimal("0.001"))
    today = timezone.localdate(timezone=dt.timezone(dt.timedelta(hours=-3)))

    def spend_of_last_7_days() -> tuple[float, Decimal]:
        stored = sum(DailyInsight.objects.filter(account=acme, date__gt=today - dt.timedelta(days=7)).values_list("spend", flat=True))
        return data_of(alice_api.get("/crm/marketing/stats?time_range=7d"))["marketing_spend"], stored

    assert spend_of_last_7_days() == (0.0, 0)
    sync_ad_account(ad_account, client=client, kind=SyncRun.Kind.INSIGHTS, **FAST)
    synced, stored = spend_of_last_7_days()
    meta_sandbox.restate(1.5, last_days=3)
    sync_ad_account(ad_account, client=client, kind=SyncRun.Kind.INSIGHTS, **FAST)
    restated, restored = spend_of_last_7_days()

    assert stored > 0 and synced == float((stored * Decimal("0.001")).quantize(Decimal("0.01")))
    assert restored > stored and restated == float((restored * Decimal("0.001")).quantize(Decimal("0.01")))
    assert rollup(acme) == rebuilt_from_scratch(acme)


def test_the_rebuild_command_reproduces_the_incrementally_maintained_rollup(alice_api, golden, acme, globex):
    l3 = lead_of(acme, local(3, 10))
    alice_api.post("/crm/leads", {"first_name": "New", "phone": "+5491155550009", "lead_source": "meta_ctwa",
                                  "meta_campaign_id": "120002"}, format="json")
    opportunity = alice_api.post("/crm/opportunities", {"lead": l3.pk, "amount": "700.00"}, format="json").json()["data"]
    alice_api.patch(f"/crm/opportunities/{opportunity['id']}", {"stage": "won"}, format="json")
    alice_api.patch(f"/crm/leads/{lead_of(acme, local(3, 20)).pk}", {"lead_source": "organic"}, format="json")
    make_sale(make_lead(globex, lead_source="meta_lead_ads", meta_campaign_id="9"), "10.00")
    incremental, globex_rows = rollup(acme), rollup(globex)
    CampaignDay.objects.filter(account=acme, day__gte=D(2025, 3, 10)).update(leads=99)
    out = StringIO()

    call_command("rebuild_roi_rollups", "--account", "acme", "--since", "2025-03-10", stdout=out)
    since_march_10 = rollup(acme)
    CampaignDay.objects.filter(account=acme).delete()
    call_command("rebuild_roi_rollups", "--account", "acme", stdout=StringIO())

    assert since_march_10 == incremental == rollup(acme)
    assert rollup(globex) == globex_rows and globex_rows  # another account is left alone
    assert out.getvalue().startswith("Rebuilt the ROI rollup of 1 account: ")
    assert " days, " in out.getvalue() and " rows written, 0 sales re-attributed, in " in out.getvalue()


def test_the_rebuild_command_rejects_an_unknown_account_and_a_bad_date(acme):
    with pytest.raises(Exception, match="No account with slug 'nope'"):
        call_command("rebuild_roi_rollups", "--account", "nope", stdout=StringIO())
    with pytest.raises(Exception, match="--since must be YYYY-MM-DD"):
        call_command("rebuild_roi_rollups", "--since", "03/10/2025", stdout=StringIO())


def test_a_timezone_change_rebuilds_the_rollup_on_the_new_days(golden, acme, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        acme.timezone = "UTC"
        acme.save()

    # L2 (03-31 23:30 at UTC-3) is on April 1st in UTC, with L6 (00:30 -> 03:30) and S7 and Op6 (01:00 -> 04:00).
    assert rollup(acme, meta_campaign_id="120001", day__gte=D(2025, 3, 31)) == [
        (D(2025, 3, 31), "120001", "USD", Decimal("20.25"), 2000, 30, 0, 0, Decimal("0.00")),
        (D(2025, 4, 1), "120001", "USD", Decimal("0.00"), 0, 0, 2, 1, Decimal("999.00")),
    ]
    assert rollup(acme) == rebuilt_from_scratch(acme)


def test_the_demo_seed_ends_with_its_rollup_built(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        seed_demo()

    for account in Account.objects.all():
        meta_leads = Lead.objects.filter(account=account, lead_source__in=Lead.META_SOURCES).count()
        assert sum(row[6] for row in rollup(account)) == meta_leads > 0
        assert rollup(account) == rebuilt_from_scratch(account)


def test_the_nightly_rebuild_repairs_writes_that_bypassed_the_models_and_is_scheduled(acme):
    lead = make_lead(acme, lead_source="meta_lead_ads", meta_campaign_id="111", created_at=timezone.now() - dt.timedelta(days=2))
    make_sale(lead, "80.00", closed_at=timezone.now() - dt.timedelta(days=1))
    rollup_marks.fold_account(acme.pk)  # the worker folded those writes
    Lead.objects.filter(pk=lead.pk).update(meta_campaign_id="222")  # no save(): no signal, no mark, no sale copy
    assert {row[1] for row in rollup(acme)} == {"111"}

    summary = rebuild_recent_roi_rollups()

    assert {row[1] for row in rollup(acme)} == {"222"}
    assert Sale.objects.get(lead=lead).meta_campaign_id == "222"
    # Two cells of campaign 111 cleared, two of 222 written.
    assert summary == "ROI rollup, last 35 days of 1 account(s): 4 rows written, 1 sale(s) re-attributed"
    schedule = Schedule.objects.get(name="marketing.rebuild_recent_roi_rollups")
    assert (schedule.func, schedule.schedule_type, schedule.repeats) == ("marketing.tasks.rebuild_recent_roi_rollups", "D", -1)


def a_sale_in_year_9999_written_around_the_admin(account: Account) -> None:
    sale = make_sale(make_lead(account, lead_source="meta_lead_ads", meta_campaign_id="111"), "5.00")
    Sale.objects.filter(pk=sale.pk).update(closed_at=dt.datetime(9999, 12, 31, tzinfo=dt.timezone.utc))  # no validation


def test_a_year_9999_sale_fails_the_rebuild_of_its_account_only_and_the_command_says_so_in_one_line(acme, globex):
    assert acme.pk < globex.pk  # the broken account comes first: the loop must carry on past it
    a_sale_in_year_9999_written_around_the_admin(acme)
    make_sale(make_lead(globex, lead_source="meta_lead_ads", meta_campaign_id="9", created_at=timezone.now() - dt.timedelta(days=3)),
              "10.00", closed_at=timezone.now() - dt.timedelta(days=1))
    globex_rows = rollup(globex)
    CampaignDay.objects.filter(account=globex).delete()
    out = StringIO()

    with pytest.raises(CommandError) as failure:
        call_command("rebuild_roi_rollups", stdout=out, stderr=StringIO())

    assert len(globex_rows) == 2 and rollup(globex) == globex_rows
    assert out.getvalue().startswith("Rebuilt the ROI rollup of 1 account: ")
    assert str(failure.value) == ("1 account failed: acme: a sale closed_at of 9999-12-31T00:00:00+00:00 is out of range "
                                  "(between 1970-01-01 and 2999-12-31); fix that row and rebuild")


def test_the_nightly_rebuild_carries_on_past_an_account_with_a_year_9999_sale(acme, globex):
    a_sale_in_year_9999_written_around_the_admin(acme)
    lead = make_lead(globex, lead_source="meta_lead_ads", meta_campaign_id="9", created_at=timezone.now() - dt.timedelta(days=2))
    rollup_marks.fold_account(globex.pk)  # the worker folded the lead
    Lead.objects.filter(pk=lead.pk).update(meta_campaign_id="10")  # bypasses the signals: only the rebuild fixes it

    summary = rebuild_recent_roi_rollups()

    assert {row[1] for row in rollup(globex)} == {"10"}
    assert summary == ("ROI rollup, last 35 days of 1 account(s): 2 rows written, 0 sale(s) re-attributed; 1 account failed: "
                       "acme: a sale closed_at of 9999-12-31T00:00:00+00:00 is out of range (between 1970-01-01 and "
                       "2999-12-31); fix that row and rebuild")


def test_a_database_migrated_with_history_gets_its_rollup_built_once_by_the_first_worker(golden, acme, globex):
    incremental = rollup(acme)
    CampaignDay.objects.all().delete()  # as right after the migration that created the table

    summary = rebuild_all_roi_rollups()

    assert rollup(acme) == incremental and rollup(globex) == []
    assert summary == f"ROI rollup of 2 account(s) built: {len(incremental)} rows written"
    once = Schedule.objects.get(name="marketing.backfill_roi_rollups")
    assert (once.func, once.schedule_type, once.repeats) == ("marketing.tasks.rebuild_all_roi_rollups", "O", -1)


def test_removing_an_ad_account_takes_its_spend_out_and_keeps_the_crm_figures(golden, acme, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        golden["C3"].ad_account.delete()  # act_brl, its campaign C3 and its insights

    assert rollup(acme, meta_campaign_id="120003") == [
        (D(2025, 3, 20), "120003", "USD", Decimal("0.00"), 0, 0, 1, 0, Decimal("0.00")),   # L4
        (D(2025, 3, 21), "120003", "USD", Decimal("0.00"), 0, 0, 0, 1, Decimal("0.00")),   # Op4
        (D(2025, 3, 25), "120003", "BRL", Decimal("0.00"), 0, 0, 0, 0, Decimal("1000.00")),  # S4
    ]
