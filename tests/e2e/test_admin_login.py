"""Signing in through the real forms in Chromium; the admin shows each tenant only its own leads."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from crm_marketing.demo import staff_group
from tests.conftest import make_lead
from tests.e2e.conftest import save_screenshot, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ACME_LEADS = ["Aurelio Acmeton", "Bettina Acmewood", "Ciro Acmesson"]
GLOBEX_LEAD = "Gregoria Globexia"
LEADS_CHANGELIST = "/admin/crm_marketing/lead/"


@pytest.fixture
def leads_of_both_tenants(acme, globex, alice, mallory):
    """Three acme leads, one globex lead; alice and mallory get the demo's staff permissions."""
    group = staff_group()
    alice.groups.add(group)
    mallory.groups.add(group)
    for full_name in ACME_LEADS:
        first, last = full_name.split()
        make_lead(acme, first_name=first, last_name=last)
    first, last = GLOBEX_LEAD.split()
    make_lead(globex, first_name=first, last_name=last)


def rows_of(page) -> list[str]:
    return [text.strip() for text in page.locator("#result_list tbody th").all_inner_texts()]


def test_alice_signs_in_to_the_admin_and_sees_only_acme_leads(page, leads_of_both_tenants):
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/admin/$"))
    sign_in(page, "alice", path=page.url)
    expect(page.locator("#user-tools")).to_contain_text("alice")

    page.goto(LEADS_CHANGELIST)

    expect(page.locator("#result_list")).to_be_visible()
    assert sorted(rows_of(page)) == sorted(ACME_LEADS)
    expect(page.get_by_text(GLOBEX_LEAD)).to_have_count(0)
    expect(page.locator(".paginator")).to_contain_text("3 leads")
    save_screenshot(page, "admin_leads")


def test_mallory_signs_in_to_the_admin_and_sees_only_globex_leads(page, leads_of_both_tenants):
    sign_in(page, "mallory", path=f"/admin/login/?next={LEADS_CHANGELIST}")

    expect(page).to_have_url(re.compile(re.escape(LEADS_CHANGELIST) + "$"))
    assert rows_of(page) == [GLOBEX_LEAD]
    for name in ACME_LEADS:
        expect(page.get_by_text(name)).to_have_count(0)


def test_a_wrong_password_keeps_mallory_on_the_admin_login_page(page, leads_of_both_tenants):
    page.goto(f"/admin/login/?next={LEADS_CHANGELIST}")
    page.fill("#id_username", "mallory")
    page.fill("#id_password", "not-her-password")
    page.locator("form [type=submit]").click()

    expect(page.locator(".errornote")).to_be_visible()
    page.goto(LEADS_CHANGELIST)
    expect(page).to_have_url(re.compile(r"/admin/login/"))


def test_the_accounts_login_page_signs_alice_in_and_redirects_to_the_next_page(page, leads_of_both_tenants):
    page.goto(f"/accounts/login/?next={LEADS_CHANGELIST}")
    expect(page).to_have_title(re.compile("Sign in"))

    sign_in(page, "alice", path=page.url)

    expect(page).to_have_url(re.compile(re.escape(LEADS_CHANGELIST) + "$"))
    assert sorted(rows_of(page)) == sorted(ACME_LEADS)


def test_the_accounts_login_page_sends_alice_to_the_hub_by_default(page, leads_of_both_tenants, live_server):
    sign_in(page, "alice")

    # LOGIN_REDIRECT_URL; the hub page itself may answer anything, the redirect is what counts.
    expect(page).to_have_url(f"{live_server.url}/hub/marketing")
    session_cookie = {c["name"]: c for c in page.context.cookies()}["sessionid"]
    assert (session_cookie["httpOnly"], session_cookie["sameSite"]) == (True, "Lax")
