"""Personas and factories shared by the whole suite.

alice is the ceo of acme, bob is a seller in acme, mallory is the ceo of globex.
"""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from crm_marketing.models import Account, Lead, Membership, Opportunity, Sale
from tests.fixtures.sandbox import meta_sandbox, meta_sandbox_server  # noqa: F401


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate-limit counters live in the cache: every test starts with none."""
    cache.clear()
    yield
    cache.clear()


def make_account(slug: str, *, currency: str = "USD", tz: str = "America/Argentina/Buenos_Aires") -> Account:
    return Account.objects.create(name=slug.title(), slug=slug, currency=currency, timezone=tz)


def make_user(username: str, account: Account | None = None, role: str = "ceo", **extra):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=username, password="pw-" + username, email=f"{username}@example.com", **extra)
    if account is not None:
        Membership.objects.create(user=user, account=account, role=role)
    return user


_phone_counter = iter(range(10_000_000, 99_999_999))


def make_lead(account: Account, **fields) -> Lead:
    fields.setdefault("first_name", "Lead")
    fields.setdefault("phone", f"+54911{next(_phone_counter)}")
    return Lead.objects.create(account=account, **fields)


def make_opportunity(lead: Lead, **fields) -> Opportunity:
    fields.setdefault("currency", lead.account.currency)
    if fields.get("stage") in ("won", "lost"):
        fields.setdefault("closed_at", timezone.now())
    return Opportunity.objects.create(account=lead.account, lead=lead, **fields)


def make_sale(lead: Lead, amount: str | Decimal, **fields) -> Sale:
    fields.setdefault("currency", lead.account.currency)
    return Sale.objects.create(account=lead.account, lead=lead, amount=Decimal(str(amount)), **fields)


@pytest.fixture
def acme(db) -> Account:
    return make_account("acme")


@pytest.fixture
def globex(db) -> Account:
    return make_account("globex", currency="EUR", tz="Europe/Madrid")


@pytest.fixture
def alice(acme):
    return make_user("alice", acme, "ceo", is_staff=True)


@pytest.fixture
def bob(acme):
    return make_user("bob", acme, "seller", is_staff=True)


@pytest.fixture
def mallory(globex):
    return make_user("mallory", globex, "ceo", is_staff=True)


def api_client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def alice_api(alice) -> APIClient:
    return api_client_for(alice)


@pytest.fixture
def bob_api(bob) -> APIClient:
    return api_client_for(bob)


@pytest.fixture
def mallory_api(mallory) -> APIClient:
    return api_client_for(mallory)


@pytest.fixture
def anonymous_api() -> APIClient:
    return APIClient()
