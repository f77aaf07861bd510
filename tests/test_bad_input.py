"""Bad input gets its documented 4xx with field errors and leaves the database unchanged."""
from __future__ import annotations

from decimal import Decimal

import pytest

from crm_marketing.models import Lead, Opportunity, Sale, SystemEvent
from tests.conftest import make_lead, make_opportunity

pytestmark = pytest.mark.django_db


def snapshot() -> tuple:
    return (
        list(Lead.objects.order_by("pk").values()),
        list(Opportunity.objects.order_by("pk").values()),
        list(Sale.objects.order_by("pk").values()),
        SystemEvent.objects.count(),
    )


def test_malformed_json_is_a_400_and_nothing_is_written(alice_api, acme):
    before = snapshot()

    response = alice_api.generic("POST", "/crm/leads", '{"first_name": "Ana", ', content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"success": False, "error": {"code": "malformed_request", "message": response.json()["error"]["message"], "fields": {}}}
    assert "JSON parse error" in response.json()["error"]["message"]
    assert snapshot() == before


def test_a_body_that_is_not_an_object_is_a_400(alice_api, acme):
    response = alice_api.post("/crm/leads", ["not", "an", "object"], format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert Lead.objects.count() == 0


def test_wrong_types_are_field_errors(alice_api, acme):
    lead = make_lead(acme)
    before = snapshot()

    response = alice_api.post("/crm/opportunities", {"lead": lead.pk, "amount": "lots", "stage": 7}, format="json")

    assert response.status_code == 400
    assert response.json() == {"success": False, "error": {
        "code": "validation_error", "message": "The request has invalid fields.",
        "fields": {"amount": ["A valid number is required."], "stage": ['"7" is not a valid choice.']},
    }}
    assert snapshot() == before


def test_unknown_fields_are_rejected_so_the_account_cannot_be_chosen_in_the_body(alice_api, acme, globex):
    response = alice_api.post("/crm/leads", {"first_name": "Ana", "phone": "+5491155550001", "account": globex.pk, "colour": "red"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"account": ["Unknown or read-only field."], "colour": ["Unknown or read-only field."]}
    assert Lead.objects.count() == 0


@pytest.mark.parametrize("query, field", [("limit=201", "limit"), ("limit=0", "limit"), ("limit=abc", "limit"), ("offset=-1", "offset")])
def test_out_of_range_pagination_is_a_400(alice_api, acme, query, field):
    response = alice_api.get(f"/crm/leads?{query}")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


def test_an_unknown_ordering_is_a_400(alice_api, acme):
    response = alice_api.get("/crm/leads?ordering=password")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["ordering"]


@pytest.mark.parametrize("phone", ["5491155550001", "+0123456", "+54 9 11 5555", "+12", "phone"])
def test_a_phone_not_in_e164_is_a_field_error(alice_api, acme, phone):
    response = alice_api.post("/crm/leads", {"first_name": "Ana", "phone": phone}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"phone": ["Enter a phone number in E.164 format, e.g. +5491155550001."]}
    assert Lead.objects.count() == 0


def test_a_duplicate_phone_in_the_same_account_is_a_field_error(alice_api, acme):
    make_lead(acme, phone="+5491155550001")

    response = alice_api.post("/crm/leads", {"first_name": "Ana", "phone": "+5491155550001"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"phone": ["A lead with this phone already exists in this account."]}
    assert Lead.objects.count() == 1


def test_the_same_phone_may_exist_in_another_account(mallory_api, acme, globex):
    make_lead(acme, phone="+5491155550001")

    response = mallory_api.post("/crm/leads", {"first_name": "Ana", "phone": "+5491155550001"}, format="json")

    assert response.status_code == 201


def test_a_negative_amount_is_a_field_error(alice_api, acme):
    lead = make_lead(acme)
    before = snapshot()

    response = alice_api.post("/crm/sales", {"lead": lead.pk, "amount": "-5.00"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"amount": ["Ensure this value is greater than or equal to 0."]}
    assert snapshot() == before


def test_changing_the_stage_of_a_closed_opportunity_is_a_409_and_changes_nothing(alice_api, acme):
    opportunity = make_opportunity(make_lead(acme), stage="lost")
    before = snapshot()

    response = alice_api.patch(f"/crm/opportunities/{opportunity.pk}", {"stage": "won", "amount": "900"}, format="json")

    assert response.status_code == 409
    assert response.json() == {"success": False, "error": {"code": "opportunity_closed", "message": "The opportunity is already lost; its stage cannot change.", "fields": {}}}
    assert snapshot() == before


def test_closing_as_won_without_an_amount_is_a_400_and_leaves_it_open(alice_api, acme):
    opportunity = make_opportunity(make_lead(acme), stage="proposal", amount=Decimal("0"))
    before = snapshot()

    response = alice_api.patch(f"/crm/opportunities/{opportunity.pk}", {"stage": "won"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"amount": ["Required and above 0 to close as won."]}
    assert snapshot() == before


def test_a_second_sale_for_the_same_opportunity_is_a_409(alice_api, acme):
    lead = make_lead(acme)
    opportunity = make_opportunity(lead)
    first = alice_api.post("/crm/sales", {"lead": lead.pk, "opportunity": opportunity.pk, "amount": "10"}, format="json")

    second = alice_api.post("/crm/sales", {"lead": lead.pk, "opportunity": opportunity.pk, "amount": "10"}, format="json")

    assert first.status_code == 201
    assert second.status_code == 409
    assert Sale.objects.count() == 1


def test_put_and_delete_are_not_allowed(alice_api, acme):
    lead = make_lead(acme)

    assert alice_api.put(f"/crm/leads/{lead.pk}", {"first_name": "X"}, format="json").status_code == 405
    assert alice_api.delete(f"/crm/leads/{lead.pk}").status_code == 405
    assert Lead.objects.filter(pk=lead.pk).exists()


@pytest.mark.parametrize("debug", [False, True])
def test_an_unknown_api_url_is_a_json_404(alice_api, acme, settings, debug):
    settings.DEBUG = debug

    response = alice_api.get("/crm/no-such-thing")

    assert response.status_code == 404
    assert response.json() == {"success": False, "error": {"code": "not_found", "message": "Not found.", "fields": {}}}
