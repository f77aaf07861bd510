"""The demo seed: two accounts, a user per role, a few hundred leads; safe to run twice."""
from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from crm_marketing.demo import DEMO_PASSWORD
from crm_marketing.models import Account, Lead, Membership, Opportunity, Sale

pytestmark = pytest.mark.django_db


def counts() -> tuple[int, int, int, int]:
    return Lead.objects.count(), Opportunity.objects.count(), Sale.objects.count(), Membership.objects.count()


def test_seed_demo_creates_both_accounts_with_every_role_and_prints_the_logins():
    out = StringIO()

    call_command("seed_demo", stdout=out)

    assert sorted(Account.objects.values_list("slug", flat=True)) == ["acme", "globex"]
    assert set(Membership.objects.filter(account__slug="acme").values_list("role", flat=True)) == {"ceo", "admin", "marketing", "seller"}
    assert Lead.objects.filter(account__slug="acme").count() == 320
    assert Lead.objects.filter(account__slug="globex").count() == 140
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
