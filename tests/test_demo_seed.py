"""The demo seed: two accounts, a user per role, 180 days of leads a manager would believe; safe to run twice."""
from __future__ import annotations

import datetime as dt
from collections import Counter
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.utils import timezone

from crm_marketing.demo import DEMO_DAYS, DEMO_PASSWORD, MAX_DAYS_TO_CLOSE, sandbox_campaigns
from crm_marketing.models import Account, Lead, Membership, Opportunity, Sale
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def counts() -> tuple[int, int, int, int]:
    return Lead.objects.count(), Opportunity.objects.count(), Sale.objects.count(), Membership.objects.count()


def test_seed_demo_creates_both_accounts_with_every_role_and_prints_the_logins():
    out = StringIO()

    call_command("seed_demo", stdout=out)

    assert sorted(Account.objects.values_list("slug", flat=True)) == ["acme", "globex"]
    assert set(Membership.objects.filter(account__slug="acme").values_list("role", flat=True)) == {"ceo", "admin", "marketing", "seller"}
    assert Lead.objects.filter(account__slug="acme").count() > 600
    assert Lead.objects.filter(account__slug="globex").count() > 200
    assert Opportunity.objects.exists() and Sale.objects.exists()
    assert f"password {DEMO_PASSWORD}" in out.getvalue() and "alice (ceo)" in out.getvalue()
    assert authenticate(username="alice", password=DEMO_PASSWORD) is not None
    assert authenticate(username="alice", password=DEMO_PASSWORD).is_staff is True
    assert authenticate(username="bob", password=DEMO_PASSWORD).is_staff is False  # sellers use the hub, not the admin


def test_seed_demo_twice_changes_nothing():
    call_command("seed_demo", stdout=StringIO())
    first = counts()

    call_command("seed_demo", stdout=StringIO())

    assert counts() == first


def test_demo_sales_belong_to_their_leads_account_and_currency():
    call_command("seed_demo", stdout=StringIO())

    for sale in Sale.objects.select_related("lead", "opportunity", "account"):
        assert sale.lead.account_id == sale.account_id == sale.opportunity.account_id
        assert sale.currency == sale.account.currency


@pytest.fixture
def demo(django_capture_on_commit_callbacks):
    """The seeded demo with its ROI rollup built (the rebuild runs once the seed commits)."""
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", stdout=StringIO())
    return timezone.now()


def test_every_sale_closes_after_its_lead_arrived_within_two_weeks_and_not_in_the_future(demo):
    for sale in Sale.objects.select_related("lead", "opportunity"):
        assert sale.lead.created_at <= sale.opportunity.created_at < sale.closed_at <= demo
        assert sale.closed_at - sale.lead.created_at <= dt.timedelta(days=MAX_DAYS_TO_CLOSE)


def test_a_campaign_gets_leads_only_while_it_ran_and_no_revenue_weeks_after_it_stopped(demo):
    for account in Account.objects.all():
        spec_ad_account = {"acme": "act_300001", "globex": "act_300003"}[account.slug]
        campaigns = {c.meta_campaign_id: c for c in sandbox_campaigns(spec_ad_account, demo.astimezone(dt.timezone.utc).date())}
        meta_leads = Lead.objects.filter(account=account, lead_source__in=Lead.META_SOURCES)
        assert meta_leads.exists()
        for lead in meta_leads:
            campaign = campaigns[lead.meta_campaign_id]
            assert campaign.ran_on(lead.created_at.astimezone(dt.timezone.utc).date()), (lead.meta_campaign_id, lead.created_at)
            assert lead.meta_ad_id == campaign.meta_ad_id
        for sale in Sale.objects.filter(account=account).exclude(meta_campaign_id=""):
            stop = campaigns[sale.meta_campaign_id].stop
            assert sale.closed_at.astimezone(dt.timezone.utc).date() <= stop + dt.timedelta(days=MAX_DAYS_TO_CLOSE)
    # The fixture's ended campaigns have leads, and the one that stopped 60 days ago has no sale in the last 30.
    acme_sales = Sale.objects.filter(account__slug="acme", closed_at__gte=demo - dt.timedelta(days=30))
    assert not acme_sales.filter(meta_campaign_id="400003").exists()
    assert Lead.objects.filter(meta_campaign_id="400003").exists() and Lead.objects.filter(meta_campaign_id="400002").exists()


def test_the_demo_spans_180_days_at_a_steady_pace_so_the_previous_period_is_full(demo):
    acme = Lead.objects.filter(account__slug="acme")
    oldest = acme.order_by("created_at").first().created_at
    last_30 = acme.filter(created_at__gte=demo - dt.timedelta(days=30)).count()
    previous_30 = acme.filter(created_at__gte=demo - dt.timedelta(days=60), created_at__lt=demo - dt.timedelta(days=30)).count()
    first_30 = acme.filter(created_at__lt=demo - dt.timedelta(days=DEMO_DAYS - 30)).count()

    assert oldest < demo - dt.timedelta(days=DEMO_DAYS - 1)
    assert 0.7 * last_30 <= previous_30 <= 1.3 * last_30
    assert first_30 < last_30 < 1.5 * first_30  # mild growth, not a hockey stick


@pytest.mark.parametrize("ceo", ["alice", "mallory"])
def test_the_ceo_sees_changes_against_a_full_previous_period_on_the_marketing_stats(demo, ceo):
    user = Membership.objects.get(user__username=ceo).user

    stats = api_client_for(user).get("/crm/marketing/stats?time_range=30d").json()["data"]

    assert stats["leads"] > 20 and stats["sales_revenue"] > 0
    assert -50 < stats["leads_change"] < 50
    assert stats["opportunities_change"] is not None and -60 < stats["opportunities_change"] < 60
    assert stats["revenue_change"] is not None and -80 < stats["revenue_change"] < 150


def test_leads_are_spread_over_three_sellers_and_sales_close_over_time_not_at_seed_time(demo):
    sellers = Counter(Lead.objects.filter(account__slug="acme").values_list("seller__username", flat=True))
    closed_days = Counter(sale.closed_at.date() for sale in Sale.objects.filter(account__slug="acme"))
    sales = sum(closed_days.values())

    assert set(sellers) == {"bob", "carla", "diego"}
    assert min(sellers.values()) > 0.2 * sum(sellers.values())
    assert max(closed_days.values()) < 0.05 * sales  # no day (seed day included) holds a pile of sales
    assert Opportunity.objects.filter(account__slug="acme", closed_at__isnull=True,
                                      created_at__gte=demo - dt.timedelta(days=MAX_DAYS_TO_CLOSE)).exists()  # still in play
    assert {lead.status for lead in Lead.objects.filter(sales__isnull=False)} == {"converted"}
