"""The interactive API docs render in a browser with no internet (their assets are served locally)."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_alice_reads_the_swagger_docs_of_the_crm_api(page, alice):
    sign_in(page, "alice")

    page.goto("/crm/docs/")

    expect(page.get_by_text("CRM Ventas Marketing API").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/crm/leads/").first).to_be_visible()
