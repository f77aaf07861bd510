"""OAuth state misuse on the Meta callback: a reused, foreign, missing, forged or expired state is
refused before Meta is called, nothing is connected, and a code is exchanged at most once, even when
the same callback arrives twice at the same moment."""
from __future__ import annotations

import secrets
import threading
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from crm_marketing.audit import SystemEvent
from meta_oauth.models import MetaConnection, OAuthState
from tests.test_meta_oauth import assert_nothing_stored, browser, oauth_calls, start_dialog, through_dialog

REFUSED = "/hub/marketing?meta_error=invalid_state"
CONNECTED = "/hub/marketing?meta=connected"


def with_state(callback: str, state: str | None) -> str:
    """The callback Meta sent, with its state replaced (None: without one)."""
    path, query = callback.split("?", 1)
    params = [p for p in query.split("&") if not p.startswith("state=")]
    if state is not None:
        params.append(f"state={state}")
    return f"{path}?{'&'.join(params)}"


def code_exchanges(sandbox) -> list:
    """The sandbox's log of authorization-code exchanges (not the long-lived token swaps)."""
    return [r for r in oauth_calls(sandbox) if isinstance(r.body, dict) and "code" in r.body]


def misuse(case: str, alice, mallory, sandbox) -> tuple[APIClient, str]:
    """(the client that comes back, the callback it comes back with) for each way to misuse a state."""
    client = browser(alice)
    callback = through_dialog(sandbox, start_dialog(client)["auth_url"])
    if case == "missing state":
        return client, with_state(callback, None)
    if case == "forged state":
        return client, with_state(callback, secrets.token_urlsafe(24))
    if case == "oversized state":
        return client, with_state(callback, "s" * 4096)
    if case == "expired state":
        OAuthState.objects.update(created_at=timezone.now() - timedelta(seconds=OAuthState.STATE_LIFETIME_SECONDS + 1))
        return client, callback
    if case == "state from another session of the same user":
        return browser(alice), callback
    if case == "state of another user":
        return browser(mallory), callback
    if case == "no session at all":
        return APIClient(), callback
    raise AssertionError(case)


CASES = ["missing state", "forged state", "oversized state", "expired state", "state from another session of the same user",
         "state of another user", "no session at all"]


@pytest.mark.parametrize("case", CASES)
def test_a_misused_state_is_refused_before_meta_is_called_and_connects_nothing(meta_sandbox, alice, acme, mallory, globex, case):
    client, callback = misuse(case, alice, mallory, meta_sandbox)

    response = client.get(callback)

    assert (response.status_code, response["Location"]) == (302, REFUSED)
    assert oauth_calls(meta_sandbox) == []  # the code was never sent to Meta
    assert_nothing_stored(acme)
    assert_nothing_stored(globex)


def test_a_reused_state_is_refused_and_the_code_is_exchanged_only_once(meta_sandbox, alice, acme):
    client = browser(alice)
    callback = through_dialog(meta_sandbox, start_dialog(client)["auth_url"])
    assert client.get(callback)["Location"] == CONNECTED
    token = MetaConnection.objects.get(account=acme).get_token()
    code = callback.split("code=", 1)[1].split("&", 1)[0]

    replay = client.get(callback)

    assert (replay.status_code, replay["Location"]) == (302, REFUSED)
    assert [r.body["code"] for r in code_exchanges(meta_sandbox)] == [code]
    assert MetaConnection.objects.get(account=acme).get_token() == token
    assert SystemEvent.objects.filter(action="meta.connect").count() == 1


def test_a_strangers_failed_attempts_do_not_burn_alices_state(meta_sandbox, alice, acme, mallory):
    client = browser(alice)
    callback = through_dialog(meta_sandbox, start_dialog(client)["auth_url"])
    for stranger in (browser(mallory), browser(alice), APIClient()):
        assert stranger.get(callback)["Location"] == REFUSED

    assert client.get(callback)["Location"] == CONNECTED
    assert MetaConnection.objects.get(account=acme).status == MetaConnection.Status.CONNECTED


def test_a_state_issued_for_one_account_connects_that_account_only(meta_sandbox, acme, globex):
    from tests.factories import make_user

    carol = make_user("carol", acme, "admin")
    carol.memberships.create(account=globex, role="ceo")
    client = browser(carol)
    client.credentials(HTTP_X_ACCOUNT="globex")
    callback = through_dialog(meta_sandbox, start_dialog(client)["auth_url"])
    client.credentials(HTTP_X_ACCOUNT="acme")  # the callback cannot be steered to another account

    assert client.get(callback)["Location"] == CONNECTED
    assert list(MetaConnection.objects.values_list("account__slug", flat=True)) == ["globex"]


@pytest.mark.skipif(db_connection.vendor == "sqlite", reason="two requests at the same moment need a database with real concurrent writers")
@pytest.mark.django_db(transaction=True)
def test_the_same_callback_twice_at_the_same_moment_exchanges_the_code_once(meta_sandbox, alice, acme):
    client = browser(alice)
    callback = through_dialog(meta_sandbox, start_dialog(client)["auth_url"])
    cookie = client.cookies["sessionid"].value
    barrier, answers = threading.Barrier(2), []

    def come_back() -> None:
        twin = APIClient()
        twin.cookies["sessionid"] = cookie
        barrier.wait()
        try:
            answers.append(twin.get(callback)["Location"])
        finally:
            connections.close_all()

    threads = [threading.Thread(target=come_back) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(answers) == sorted([REFUSED, CONNECTED])
    assert len(code_exchanges(meta_sandbox)) == 1
    assert MetaConnection.objects.filter(account=acme).count() == 1
