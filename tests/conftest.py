"""Personas shared by the whole suite: alice is the ceo of acme, bob is a seller in acme, mallory is
the ceo of globex. The factories live in tests/factories.py (re-exported here for older imports).
"""
from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from crm_marketing.models import Account
from tests.factories import api_client_for, make_account, make_lead, make_opportunity, make_sale, make_user  # noqa: F401
from tests.fixtures.sandbox import meta_sandbox, meta_sandbox_server  # noqa: F401
# The suite-wide leak guard: a test fails when a secret shows in a response, a log line or its output.
from tests.leak_guard import _leak_guard_recorder, pytest_runtest_makereport, pytest_runtest_setup  # noqa: F401


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate-limit counters live in the cache: every test starts with none."""
    cache.clear()
    yield
    cache.clear()


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
