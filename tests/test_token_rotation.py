"""manage.py rotate_token_keys: re-encrypt every stored Meta token with the newest key."""
from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from crm_marketing.crypto import TokenDecryptionError
from meta_oauth.models import MetaConnection, MetaPage
from tests.conftest import make_account

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def store_token(account, token: str) -> MetaConnection:
    connection = MetaConnection(account=account, status="connected")
    connection.set_token(token)
    connection.save()
    return connection


def rotate(*args: str) -> str:
    out = StringIO()
    call_command("rotate_token_keys", *args, stdout=out)
    return out.getvalue()


def test_rotation_moves_every_token_to_the_newest_key_so_the_old_one_can_go(settings, acme, globex):
    settings.META_TOKEN_KEYS = [OLD_KEY]
    acme_connection = store_token(acme, "EAA-acme-token")
    globex_connection = store_token(globex, "EAA-globex-token")
    MetaConnection.objects.create(account=make_account("initech"), status="disconnected")
    old_ciphertext = acme_connection.token_ciphertext

    settings.META_TOKEN_KEYS = [NEW_KEY, OLD_KEY]
    output = rotate()

    assert output == "Re-encrypted 2 Meta token(s) with the newest key.\n"
    assert "EAA-" not in output
    settings.META_TOKEN_KEYS = [NEW_KEY]
    acme_connection.refresh_from_db()
    globex_connection.refresh_from_db()
    assert acme_connection.token_ciphertext != old_ciphertext
    assert (acme_connection.get_token(), globex_connection.get_token()) == ("EAA-acme-token", "EAA-globex-token")
    assert Fernet(NEW_KEY.encode()).decrypt(acme_connection.token_ciphertext.encode()) == b"EAA-acme-token"


def test_without_rotation_dropping_the_old_key_makes_the_token_unreadable(settings, acme):
    settings.META_TOKEN_KEYS = [OLD_KEY]
    connection = store_token(acme, "EAA-acme-token")

    settings.META_TOKEN_KEYS = [NEW_KEY]

    connection.refresh_from_db()
    with pytest.raises(TokenDecryptionError):
        connection.get_token()


def test_rotation_can_be_limited_to_one_account(settings, acme, globex):
    settings.META_TOKEN_KEYS = [OLD_KEY]
    store_token(acme, "EAA-acme-token")
    globex_connection = store_token(globex, "EAA-globex-token")

    settings.META_TOKEN_KEYS = [NEW_KEY, OLD_KEY]
    assert rotate("--account", "acme") == "Re-encrypted 1 Meta token(s) with the newest key.\n"

    settings.META_TOKEN_KEYS = [NEW_KEY]
    globex_connection.refresh_from_db()
    with pytest.raises(TokenDecryptionError):
        globex_connection.get_token()


def test_a_token_that_matches_no_key_is_reported_by_account_and_left_alone(settings, acme, globex):
    settings.META_TOKEN_KEYS = [OLD_KEY]
    lost = store_token(acme, "EAA-acme-token")
    settings.META_TOKEN_KEYS = [NEW_KEY]
    store_token(globex, "EAA-globex-token")
    lost_ciphertext = lost.token_ciphertext
    out = StringIO()

    with pytest.raises(CommandError, match="1 token\\(s\\) match no key in META_TOKEN_KEYS \\(accounts: acme\\)"):
        call_command("rotate_token_keys", stdout=out)

    assert out.getvalue() == "Re-encrypted 1 Meta token(s) with the newest key.\n"
    lost.refresh_from_db()
    assert lost.token_ciphertext == lost_ciphertext


def test_an_unreadable_token_is_a_503_reconnect_not_a_500(meta_sandbox, settings, alice_api, acme):
    settings.META_TOKEN_KEYS = [OLD_KEY]
    store_token(acme, meta_sandbox.issue_token())
    settings.META_TOKEN_KEYS = [NEW_KEY]

    response = alice_api.get("/crm/marketing/meta-accounts")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "meta_reconnect_required"
    assert meta_sandbox.requests == []
    status = alice_api.get("/crm/marketing/token-status").json()["data"]
    assert (status["connected"], status["needs_reconnect"], status["business_managers"], status["ad_accounts"]) == (
        False, True, None, None)


def test_page_tokens_are_rotated_with_the_user_tokens(settings, acme):
    settings.META_TOKEN_KEYS = [OLD_KEY]
    store_token(acme, "EAA-acme-token")
    page = MetaPage(account=acme, meta_page_id="1500001", name="Acme Ventas")
    page.set_page_token("EAA-page-token")
    page.save()
    MetaPage.objects.create(account=acme, meta_page_id="1500002", name="No token")

    settings.META_TOKEN_KEYS = [NEW_KEY, OLD_KEY]
    output = rotate()

    settings.META_TOKEN_KEYS = [NEW_KEY]
    page.refresh_from_db()
    assert output == "Re-encrypted 2 Meta token(s) with the newest key.\n"
    assert page.get_page_token() == "EAA-page-token"
