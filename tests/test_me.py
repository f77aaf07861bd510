"""GET /crm/me: who the hub is talking to, which accounts they can switch to, and the one chosen."""
from __future__ import annotations

import pytest

from crm_marketing.models import Membership
from tests.conftest import make_lead

pytestmark = pytest.mark.django_db


def acme_membership(acme, role="ceo") -> dict:
    return {"account_id": acme.pk, "name": "Acme", "slug": "acme", "role": role, "currency": "USD",
            "timezone": "America/Argentina/Buenos_Aires"}


def globex_membership(globex, role) -> dict:
    return {"account_id": globex.pk, "name": "Globex", "slug": "globex", "role": role, "currency": "EUR",
            "timezone": "Europe/Madrid"}


def test_alice_with_one_account_gets_herself_her_membership_and_that_account_in_spanish(alice_api, alice, acme):
    alice.first_name, alice.last_name = "Alice", "Arias"
    alice.save()

    response = alice_api.get("/crm/me")

    assert response.status_code == 200
    assert response.json()["data"] == {
        "user": {"id": alice.pk, "username": "alice", "name": "Alice Arias", "email": "alice@example.com", "is_staff": True},
        "memberships": [acme_membership(acme)],
        "account": acme_membership(acme),
        "language": "es",
    }


def test_alice_in_two_accounts_gets_no_account_until_she_names_one_with_x_account(alice_api, alice, acme, globex):
    Membership.objects.create(user=alice, account=globex, role="marketing")

    unchosen = alice_api.get("/crm/me/")
    chosen = alice_api.get("/crm/me", HTTP_X_ACCOUNT="globex")

    both = [acme_membership(acme), globex_membership(globex, "marketing")]
    assert (unchosen.status_code, chosen.status_code) == (200, 200)
    assert unchosen.json()["data"]["memberships"] == both
    assert unchosen.json()["data"]["account"] is None
    assert chosen.json()["data"]["memberships"] == both
    assert chosen.json()["data"]["account"] == globex_membership(globex, "marketing")


def test_the_account_x_account_chooses_is_the_one_every_api_call_acts_for(alice_api, alice, acme, globex):
    Membership.objects.create(user=alice, account=globex, role="ceo")
    make_lead(acme, first_name="Acme lead")
    make_lead(globex, first_name="Globex lead")

    without = alice_api.get("/crm/leads")
    as_globex = alice_api.get("/crm/leads", HTTP_X_ACCOUNT="globex")

    assert (without.status_code, without.json()["error"]["code"]) == (400, "account_required")
    assert [row["first_name"] for row in as_globex.json()["data"]["results"]] == ["Globex lead"]


def test_mallory_naming_acme_in_x_account_is_refused_on_me_too(mallory_api, acme):
    response = mallory_api.get("/crm/me", HTTP_X_ACCOUNT="acme")

    assert response.status_code == 403
    assert response.json()["success"] is False
    assert "Acme" not in response.content.decode()


def test_bob_the_seller_sees_his_role_and_an_english_browser_gets_english(bob_api, bob, acme):
    response = bob_api.get("/crm/me", HTTP_ACCEPT_LANGUAGE="en-GB,en;q=0.9,es;q=0.5")

    assert response.json()["data"] == {
        "user": {"id": bob.pk, "username": "bob", "name": "bob", "email": "bob@example.com", "is_staff": True},
        "memberships": [acme_membership(acme, "seller")],
        "account": acme_membership(acme, "seller"),
        "language": "en",
    }


@pytest.mark.parametrize(("accept_language", "language"), [("fr-FR,fr;q=0.9", "es"), ("fr,es-AR;q=0.8,en;q=0.5", "es"), ("", "es")])
def test_a_language_the_hub_does_not_speak_falls_back_to_spanish_or_the_next_choice(alice_api, accept_language, language):
    response = alice_api.get("/crm/me", HTTP_ACCEPT_LANGUAGE=accept_language)

    assert response.json()["data"]["language"] == language


def test_a_user_of_no_account_gets_an_empty_list_and_no_account(db):
    from tests.conftest import api_client_for, make_user

    newcomer = make_user("nadia")

    response = api_client_for(newcomer).get("/crm/me")

    assert response.status_code == 200
    assert (response.json()["data"]["memberships"], response.json()["data"]["account"]) == ([], None)


def test_anonymous_gets_401_and_writes_are_405(anonymous_api, alice_api):
    anonymous = anonymous_api.get("/crm/me")
    post = alice_api.post("/crm/me", {}, format="json")

    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "not_authenticated")
    assert post.status_code == 405
