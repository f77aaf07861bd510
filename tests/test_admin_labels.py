"""What a new staff member meets in the admin: its name, plain labels, money and times as people read them,
and no "Add" button that ends in a 403."""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.contrib import admin
from django.test import Client

from crm_marketing.admin_display import format_local_time, format_money
from crm_marketing.demo import staff_group
from crm_marketing.models import Lead, LeadTouch
from marketing.models import AdAccount, Campaign, DailyInsight
from tests.conftest import make_account, make_lead, make_opportunity, make_sale, make_user

pytestmark = pytest.mark.django_db
UTC = dt.timezone.utc


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def ars():
    return make_account("pampa", currency="ARS", tz="America/Argentina/Buenos_Aires")


@pytest.fixture
def maria(acme):
    user = make_user("maria", acme, "marketing", is_staff=True)
    user.groups.add(staff_group())
    return user


@pytest.fixture
def staff(alice, bob):
    for user in (alice, bob):
        user.groups.add(staff_group())


@pytest.fixture
def root(db):
    return make_user("root", is_staff=True, is_superuser=True)


def test_the_admin_is_titled_crm_ventas_marketing_with_plain_model_names(root):
    page = signed_in(root).get("/admin/").content.decode()

    assert "<title>CRM Ventas Marketing administration | CRM Ventas Marketing</title>" in page
    assert '<a href="/admin/">CRM Ventas Marketing</a>' in page
    for label in ("Lead touches", "Opportunities", "Ad sets", "Daily insights", "Meta connections", "System events"):
        assert f">{label}</a>" in page, label
    assert "touchs" not in page and "Opportunitys" not in page


def test_every_model_of_the_three_apps_has_a_readable_singular_and_plural():
    from django.apps import apps

    names = {model._meta.label: (str(model._meta.verbose_name), str(model._meta.verbose_name_plural))
             for app in ("crm_marketing", "marketing", "meta_oauth") for model in apps.get_app_config(app).get_models()}

    assert names["crm_marketing.LeadTouch"] == ("lead touch", "lead touches")
    assert names["crm_marketing.Opportunity"] == ("opportunity", "opportunities")
    assert names["meta_oauth.OAuthState"] == ("OAuth state", "OAuth states")
    assert names["meta_oauth.WhatsAppChannel"] == ("WhatsApp channel", "WhatsApp channels")
    assert names["marketing.AdSet"] == ("ad set", "ad sets")
    for label, (singular, plural) in names.items():
        assert not re.search(r"([^aeiou]ys|chs|shs|ss)$", plural), label  # Django's naive "+s" on an irregular word
        assert not singular.startswith(("o auth", "whats app")), label  # what Django makes of OAuth, WhatsApp


def test_lead_sources_read_meta_lead_ads_and_meta_ctwa_in_the_lead_list_and_its_filter(root, acme):
    make_lead(acme, first_name="Form", lead_source="meta_lead_ads", meta_campaign_id="400001")
    make_lead(acme, first_name="Chat", lead_source="meta_ctwa")

    page = signed_in(root).get("/admin/crm_marketing/lead/").content.decode()

    assert dict(Lead.Source.choices) == {"organic": "Organic", "meta_lead_ads": "Meta Lead Ads", "meta_ctwa": "Meta CTWA",
                                         "manual": "Manual", "import": "Import"}
    assert '<td class="field-lead_source">Meta CTWA</td>' in page
    assert '<td class="field-lead_source">Meta Lead Ads</td>' in page
    assert "Meta campaign ID" in page and "Meta ctwa" not in page


def test_money_shows_thousands_separators_and_the_currency(root, ars):
    lead = make_lead(ars, first_name="Comprador")
    opportunity = make_opportunity(lead, title="Plan Empresa", amount=Decimal("1234567.00"))
    make_sale(lead, "1234567.00", opportunity=opportunity)
    client = signed_in(root)

    sales = client.get("/admin/crm_marketing/sale/").content.decode()
    opportunities = client.get("/admin/crm_marketing/opportunity/").content.decode()

    assert '/change/">1,234,567.00 ARS</a></th>' in sales  # the sale list's first column links to the sale
    assert '<td class="field-amount_display">1,234,567.00 ARS</td>' in opportunities
    assert format_money(Decimal("0.5"), "EUR") == "0.50 EUR" and format_money(None, "EUR") == "-"


def test_campaign_budgets_are_in_major_units_and_spend_has_separators(root, ars):
    ad_account = AdAccount.objects.create(account=ars, meta_ad_account_id="act_1", name="AR", currency="ARS")
    Campaign.objects.create(account=ars, ad_account=ad_account, meta_campaign_id="400001", name="Leads Q4",
                            daily_budget=150000, lifetime_budget=300000000)
    DailyInsight.objects.create(account=ars, ad_account=ad_account, meta_campaign_id="400001", meta_adset_id="1",
                                meta_ad_id="2", date=dt.date(2026, 11, 1), currency="ARS", spend=Decimal("45210.50"),
                                synced_at=dt.datetime(2026, 11, 2, tzinfo=UTC))
    client = signed_in(root)

    campaigns = client.get("/admin/marketing/campaign/").content.decode()
    insights = client.get("/admin/marketing/dailyinsight/").content.decode()

    assert '<td class="field-daily_budget_display">1,500.00 ARS</td>' in campaigns
    assert '<td class="field-lifetime_budget_display">3,000,000.00 ARS</td>' in campaigns
    assert '<td class="field-spend_display">45,210.50 ARS</td>' in insights


def test_lead_and_sale_times_are_shown_on_the_clock_of_the_leads_account(root, ars, globex):
    at = dt.datetime(2026, 3, 1, 15, 30, tzinfo=UTC)
    buenos_aires = make_lead(ars, first_name="Porteño", created_at=at)
    make_lead(globex, first_name="Madrileño", created_at=at)
    make_sale(buenos_aires, "10.00", closed_at=at)
    client = signed_in(root)

    leads = client.get("/admin/crm_marketing/lead/").content.decode()
    sales = client.get("/admin/crm_marketing/sale/").content.decode()

    assert '<td class="field-created_at_local">March 1, 2026, 12:30 p.m. -03</td>' in leads
    assert '<td class="field-created_at_local">March 1, 2026, 4:30 p.m. CET</td>' in leads
    assert '<td class="field-closed_at_local">March 1, 2026, 12:30 p.m. -03</td>' in sales
    assert format_local_time(None, "UTC") == "-"


ADD_LINK = 'href="/admin/{app}/{model}/add/"'


def admin_models():
    return [(m._meta.app_label, m._meta.model_name) for m in admin.site._registry]


@pytest.mark.parametrize("persona", ["root", "alice", "maria", "bob"])
def test_an_add_button_is_shown_exactly_where_the_add_page_opens(request, staff, persona):
    user = request.getfixturevalue(persona)
    client = signed_in(user)
    index = client.get("/admin/").content.decode()

    for app, model in admin_models():
        changelist = client.get(f"/admin/{app}/{model}/")
        add_page = client.get(f"/admin/{app}/{model}/add/")
        shown = ADD_LINK.format(app=app, model=model) in index + changelist.content.decode()
        assert add_page.status_code == (200 if shown else 403), (persona, app, model, add_page.status_code)


def test_rows_synced_from_meta_and_webhooks_have_no_add_button_even_for_a_superuser(root):
    client = signed_in(root)
    index = client.get("/admin/").content.decode()

    for app, model in [("marketing", "campaign"), ("marketing", "adset"), ("marketing", "ad"), ("marketing", "dailyinsight"),
                       ("marketing", "campaignday"), ("marketing", "syncrun"), ("marketing", "adaccount"),
                       ("crm_marketing", "webhookevent"), ("crm_marketing", "leadtouch"), ("crm_marketing", "systemevent"),
                       ("meta_oauth", "metaconnection")]:
        assert ADD_LINK.format(app=app, model=model) not in index, model
        assert client.get(f"/admin/{app}/{model}/add/").status_code == 403, model


def test_alice_the_ceo_adds_leads_and_memberships_but_not_accounts(staff, alice):
    client = signed_in(alice)
    index = client.get("/admin/").content.decode()

    assert ADD_LINK.format(app="crm_marketing", model="lead") in index
    assert ADD_LINK.format(app="crm_marketing", model="membership") in index
    assert ADD_LINK.format(app="crm_marketing", model="account") not in index  # only superusers create accounts
    assert client.get("/admin/crm_marketing/account/add/").status_code == 403


def test_maria_in_marketing_neither_sees_nor_opens_memberships_or_the_audit_trail(maria, acme):
    client = signed_in(maria)
    index = client.get("/admin/").content.decode()

    assert ADD_LINK.format(app="crm_marketing", model="lead") in index
    assert "/admin/crm_marketing/membership/" not in index and "/admin/crm_marketing/account/" not in index
    assert client.get("/admin/crm_marketing/membership/add/").status_code == 403
    assert client.get("/admin/crm_marketing/membership/").status_code == 403


def test_bob_the_seller_made_staff_meets_no_crm_page_he_cannot_use(staff, bob, acme):
    make_lead(acme, first_name="Someone", seller=bob)
    client = signed_in(bob)

    index = client.get("/admin/").content.decode()

    assert "/admin/crm_marketing/" not in index and "/admin/marketing/" not in index
    assert client.get("/admin/crm_marketing/lead/").status_code == 403
    assert client.get("/admin/crm_marketing/lead/add/").status_code == 403
    assert LeadTouch.objects.count() == 0
