"""Connecting Meta from the hub page in Chromium: button -> sandbox dialog -> callback -> hub."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from meta_oauth.models import MetaConnection
from tests.e2e.conftest import save_screenshot, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def open_the_hub_and_click_connect(page, meta_sandbox) -> None:
    sign_in(page, "alice")  # LOGIN_REDIRECT_URL is the hub
    expect(page.locator("#meta-state")).to_have_text("Meta is not connected.")
    page.locator("#connect-meta").click()
    expect(page).to_have_title("Meta sandbox: connect")
    assert page.url.startswith(meta_sandbox.base_url + "/")


def test_alice_connects_meta_from_the_hub_through_the_dialog(page, live_server, meta_sandbox, alice, acme):
    meta_sandbox.set_dialog_decision(None)  # the dialog is a page with Approve / Deny
    open_the_hub_and_click_connect(page, meta_sandbox)

    page.locator("#approve").click()

    expect(page).to_have_url(f"{live_server.url}/hub/marketing?meta=connected")
    expect(page.locator("#meta-message")).to_have_text("Meta is connected.")
    expect(page.locator("#meta-state")).to_contain_text("Connected as Ana Gerente")
    expect(page.locator("#connect-meta")).to_have_text("Reconnect Meta")
    expect(page.locator("#disconnect-meta")).to_be_visible()
    save_screenshot(page, "hub_connected")
    connection = MetaConnection.objects.get(account=acme)
    assert (connection.status, connection.meta_user_id, connection.connected_by) == ("connected", "10001", alice)
    assert connection.get_token() and connection.get_token() not in page.content()
    # The code was exchanged with the callback URL the browser really came back to.
    code_exchange = next(r for r in meta_sandbox.requests if r.path.endswith("oauth/access_token"))
    assert code_exchange.body["redirect_uri"] == f"{live_server.url}/crm/auth/meta/callback"


def test_denying_the_dialog_brings_alice_back_to_the_hub_with_a_message(page, live_server, meta_sandbox, alice, acme):
    meta_sandbox.set_dialog_decision(None)
    open_the_hub_and_click_connect(page, meta_sandbox)

    page.locator("#deny").click()

    expect(page).to_have_url(f"{live_server.url}/hub/marketing?meta_error=access_denied")
    expect(page.locator("#meta-message")).to_have_text(
        "The Meta dialog was cancelled or the permissions were declined.")
    expect(page.locator("#meta-state")).to_have_text("Meta is not connected.")
    assert not MetaConnection.objects.filter(account=acme).exists()


def test_disconnecting_from_the_hub_forgets_the_token(page, live_server, meta_sandbox, alice, acme):
    meta_sandbox.set_dialog_decision("approve")  # the dialog redirects straight back
    sign_in(page, "alice")
    page.locator("#connect-meta").click()
    expect(page).to_have_url(re.compile(r"\?meta=connected$"))
    expect(page.locator("#meta-state")).to_contain_text("Connected as")

    page.locator("#disconnect-meta").click()

    expect(page.locator("#meta-state")).to_have_text("Meta is not connected.")
    expect(page.locator("#disconnect-meta")).to_have_count(0)
    connection = MetaConnection.objects.get(account=acme)
    assert (connection.status, connection.token_ciphertext) == ("disconnected", "")
