"""The CRM API: leads, opportunities and sales as the hub and other systems push them."""
from __future__ import annotations

from contextlib import contextmanager
from decimal import Decimal
from typing import Iterator

import pytest

from crm_marketing import events
from crm_marketing.models import Lead, Membership, Opportunity, OutboxEvent, Sale, SystemEvent
from tests.conftest import make_lead, make_opportunity, make_sale

pytestmark = pytest.mark.django_db


@contextmanager
def events_received(name: str, capture_on_commit) -> Iterator[list]:
    """Subscribe to ``name`` while the block runs, with on-commit callbacks executed."""
    received: list = []
    events.subscribe(name, received.append)
    try:
        with capture_on_commit(execute=True):
            yield received
    finally:
        events.unsubscribe(name, received.append)


def body_without_timestamp(response) -> dict:
    body = response.json()
    assert body.pop("timestamp", "").endswith("Z") or body["success"] is False
    return body


def test_alice_creates_a_lead_and_gets_it_back_in_the_envelope(alice_api, acme, alice):
    response = alice_api.post("/crm/leads", {"first_name": "María", "last_name": "Pérez", "phone": "+5491155550001", "email": "maria@example.com"}, format="json")

    assert response.status_code == 201
    body = body_without_timestamp(response)
    lead = Lead.objects.get()
    assert body == {"success": True, "data": {
        "id": lead.pk, "first_name": "María", "last_name": "Pérez", "name": "María Pérez", "phone": "+5491155550001",
        "email": "maria@example.com", "status": "new", "lead_source": "manual", "meta_campaign_id": "", "meta_adset_id": "",
        "meta_ad_id": "", "meta_form_id": "", "meta_ad_headline": "", "meta_ad_body": "", "ctwa_clid": "", "external_ids": {},
        "seller": None, "opted_out_at": None, "last_inbound_at": None, "status_changed_at": None, "status_changed_by": None,
        "created_at": body["data"]["created_at"], "updated_at": body["data"]["updated_at"],
    }}
    assert lead.account == acme
    assert SystemEvent.objects.filter(action="lead.create", account=acme, actor=alice, target_id=str(lead.pk)).exists()


def test_the_lead_list_is_paginated_with_total_limit_and_offset(alice_api, acme):
    for i in range(5):
        make_lead(acme, first_name=f"Lead{i}")

    response = alice_api.get("/crm/leads?limit=2&offset=1&ordering=first_name")

    assert response.status_code == 200
    data = response.json()["data"]
    assert [row["first_name"] for row in data["results"]] == ["Lead1", "Lead2"]
    assert (data["total"], data["limit"], data["offset"]) == (5, 2, 1)


def test_leads_can_be_filtered_by_source_and_status(alice_api, acme):
    make_lead(acme, first_name="Ads", lead_source="meta_lead_ads")
    make_lead(acme, first_name="Ctwa", lead_source="meta_ctwa", status="contacted")
    make_lead(acme, first_name="Walk-in", lead_source="organic")

    response = alice_api.get("/crm/leads?lead_source=meta_ctwa&status=contacted")

    assert [row["first_name"] for row in response.json()["data"]["results"]] == ["Ctwa"]


def test_changing_a_lead_status_records_who_and_when_and_publishes_an_event_after_commit(alice_api, acme, alice, django_capture_on_commit_callbacks):
    lead = make_lead(acme)
    with events_received(events.LEAD_STATUS_CHANGED, django_capture_on_commit_callbacks) as received:
        response = alice_api.patch(f"/crm/leads/{lead.pk}", {"status": "contacted"}, format="json")

    assert response.status_code == 200
    lead.refresh_from_db()
    assert (lead.status, lead.status_changed_by) == ("contacted", alice)
    assert lead.status_changed_at is not None
    outbox = OutboxEvent.objects.get(name=events.LEAD_STATUS_CHANGED)
    assert received == [events.DomainEvent(events.LEAD_STATUS_CHANGED, acme.pk, {"lead_id": lead.pk, "old": "new", "new": "contacted"}, outbox.pk)]
    assert outbox.delivered_at is not None


def test_no_event_is_published_when_the_change_is_rejected(alice_api, acme, django_capture_on_commit_callbacks):
    lead = make_lead(acme)
    with events_received(events.LEAD_STATUS_CHANGED, django_capture_on_commit_callbacks) as received:
        response = alice_api.patch(f"/crm/leads/{lead.pk}", {"status": "teleported"}, format="json")

    assert response.status_code == 400
    assert received == []


def test_closing_an_opportunity_as_won_creates_the_sale_and_publishes_won(alice_api, acme, alice, django_capture_on_commit_callbacks):
    lead = make_lead(acme)
    opportunity = make_opportunity(lead, amount=Decimal("0"))
    with events_received(events.OPPORTUNITY_WON, django_capture_on_commit_callbacks) as received:
        response = alice_api.patch(f"/crm/opportunities/{opportunity.pk}", {"stage": "won", "amount": "1500.50"}, format="json")

    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert (data["stage"], data["amount"], data["currency"]) == ("won", 1500.5, "USD")
    sale = Sale.objects.get()
    assert (sale.opportunity, sale.lead, sale.amount, sale.currency, sale.status) == (opportunity, lead, Decimal("1500.50"), "USD", "completed")
    opportunity.refresh_from_db()
    assert opportunity.closed_at == sale.closed_at
    assert opportunity.stage_changed_by == alice
    assert [e.payload["sale_id"] for e in received] == [sale.pk]


def test_a_sale_can_be_recorded_and_refunded(alice_api, acme):
    lead = make_lead(acme)

    created = alice_api.post("/crm/sales", {"lead": lead.pk, "amount": "200.00"}, format="json")
    refunded = alice_api.patch(f"/crm/sales/{created.json()['data']['id']}", {"status": "refunded"}, format="json")

    assert created.status_code == 201
    assert refunded.json()["data"]["status"] == "refunded"
    assert Sale.objects.get().status == "refunded"


def test_bob_the_seller_sees_only_his_own_leads(bob_api, acme, bob, alice):
    mine = make_lead(acme, first_name="Mine", seller=bob)
    make_lead(acme, first_name="Alice's", seller=alice)

    response = bob_api.get("/crm/leads")

    assert [row["id"] for row in response.json()["data"]["results"]] == [mine.pk]


def test_a_lead_bob_creates_is_assigned_to_him(bob_api, acme, bob):
    response = bob_api.post("/crm/leads", {"first_name": "Nuevo", "phone": "+5491155550009"}, format="json")

    assert response.status_code == 201
    assert Lead.objects.get().seller == bob


def test_a_user_in_two_accounts_chooses_one_with_the_x_account_header(alice_api, acme, globex, alice):
    from crm_marketing.models import Membership

    Membership.objects.create(user=alice, account=globex, role="marketing")
    make_lead(acme, first_name="Acme lead")
    make_lead(globex, first_name="Globex lead")

    without = alice_api.get("/crm/leads")
    with_globex = alice_api.get("/crm/leads", HTTP_X_ACCOUNT="globex")

    assert without.status_code == 400
    assert without.json()["error"]["code"] == "account_required"
    assert [row["first_name"] for row in with_globex.json()["data"]["results"]] == ["Globex lead"]


def test_opportunity_stage_filter_and_sale_list(alice_api, acme):
    lead = make_lead(acme)
    make_opportunity(lead, stage="proposal")
    make_opportunity(lead, stage="lost")
    make_sale(lead, "10.00")

    proposals = alice_api.get("/crm/opportunities?stage=proposal").json()["data"]
    sales = alice_api.get("/crm/sales").json()["data"]

    assert [row["stage"] for row in proposals["results"]] == ["proposal"]
    assert (sales["total"], sales["results"][0]["amount"]) == (1, 10.0)
    assert Opportunity.objects.count() == 2


def test_bob_cannot_open_an_opportunity_or_record_a_sale_on_a_lead_that_is_not_his(bob_api, acme, bob, alice):
    alices = make_lead(acme, first_name="Alice's", seller=alice)
    unassigned = make_lead(acme, first_name="Nobody's")
    before = (Opportunity.objects.count(), Sale.objects.count(), SystemEvent.objects.count())

    answers = [
        bob_api.post("/crm/opportunities", {"lead": alices.pk, "title": "Mine now"}, format="json"),
        bob_api.post("/crm/opportunities", {"lead": unassigned.pk, "title": "Mine now"}, format="json"),
        bob_api.post("/crm/sales", {"lead": alices.pk, "amount": "10"}, format="json"),
    ]

    # The same answer as for a lead that does not exist at all: nothing tells bob it is there.
    assert [(a.status_code, a.json()["error"]["fields"]) for a in answers] == [
        (400, {"lead": [f'Invalid pk "{alices.pk}" - object does not exist.']}),
        (400, {"lead": [f'Invalid pk "{unassigned.pk}" - object does not exist.']}),
        (400, {"lead": [f'Invalid pk "{alices.pk}" - object does not exist.']}),
    ]
    assert (Opportunity.objects.count(), Sale.objects.count(), SystemEvent.objects.count()) == before


def test_bob_cannot_attach_his_sale_to_an_opportunity_of_someone_elses_lead(bob_api, acme, bob, alice):
    mine = make_lead(acme, seller=bob)
    theirs = make_opportunity(make_lead(acme, seller=alice), title="Alice's deal")

    response = bob_api.post("/crm/sales", {"lead": mine.pk, "opportunity": theirs.pk, "amount": "10"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"opportunity": [f'Invalid pk "{theirs.pk}" - object does not exist.']}
    assert not Sale.objects.exists()


def test_bob_cannot_hand_a_lead_to_another_seller_but_alice_can(bob_api, alice_api, acme, bob, alice):
    mine = make_lead(acme, seller=bob)

    given_away = bob_api.patch(f"/crm/leads/{mine.pk}", {"seller": alice.pk}, format="json")
    created_for_alice = bob_api.post("/crm/leads", {"first_name": "Ana", "phone": "+5491155550001", "seller": alice.pk}, format="json")
    reassigned = alice_api.patch(f"/crm/leads/{mine.pk}", {"seller": alice.pk}, format="json")

    assert given_away.status_code == created_for_alice.status_code == 400
    assert given_away.json()["error"]["fields"] == {"seller": [f'Invalid pk "{alice.pk}" - object does not exist.']}
    assert reassigned.status_code == 200
    assert Lead.objects.get(pk=mine.pk).seller == alice
    assert not Lead.objects.filter(phone="+5491155550001").exists()


def test_a_lead_bob_creates_with_no_seller_is_still_his(bob_api, acme, bob):
    response = bob_api.post("/crm/leads", {"first_name": "Nuevo", "phone": "+5491155550009", "seller": None}, format="json")

    assert response.status_code == 201
    assert response.json()["data"]["seller"] == bob.pk
    assert Lead.objects.get().seller == bob


def test_bob_can_still_work_his_own_leads(bob_api, acme, bob):
    mine = make_lead(acme, seller=bob)

    opportunity = bob_api.post("/crm/opportunities", {"lead": mine.pk, "title": "Plan Pro", "seller": bob.pk}, format="json")
    sale = bob_api.post("/crm/sales", {"lead": mine.pk, "opportunity": opportunity.json()["data"]["id"], "amount": "10"}, format="json")

    assert (opportunity.status_code, sale.status_code) == (201, 201)
    assert Sale.objects.get().opportunity.lead == mine


def test_a_session_key_no_longer_chooses_the_account_only_x_account_does(alice, acme, globex):
    from django.test import Client

    Membership.objects.create(user=alice, account=globex, role="ceo")
    client = Client()
    client.force_login(alice)
    session = client.session
    session["account_slug"] = "globex"  # what the old server-rendered hub page remembered
    session.save()
    make_lead(acme, first_name="Acme lead")

    remembered = client.get("/crm/leads")
    asked = client.get("/crm/leads", HTTP_X_ACCOUNT="acme")

    assert (remembered.status_code, remembered.json()["error"]["code"]) == (400, "account_required")
    assert [row["first_name"] for row in asked.json()["data"]["results"]] == ["Acme lead"]
