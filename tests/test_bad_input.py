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


# -- input that used to reach the database or the stack and come back as a 500 ----------------------------------
@pytest.mark.parametrize("url", ["/crm/leads?offset=999999999999999999999999999999", "/crm/leads?seller=99999999999999999999",
                                 "/crm/opportunities?lead=99999999999999999999", "/crm/sales?lead=-5"])
def test_ids_and_offsets_beyond_the_database_integer_range_are_a_400(alice_api, acme, url):
    response = alice_api.get(url)

    field = url.split("?")[1].split("=")[0]
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


@pytest.mark.parametrize("url", ["/crm/marketing/campaigns/12%0034", "/crm/leads?email=a%00b", "/crm/leads?x%00=1"])
def test_a_nul_character_in_the_url_is_a_400(alice_api, acme, url):
    response = alice_api.get(url)

    assert response.status_code == 400
    assert response.json() == {"success": False, "error": {"code": "malformed_request", "message": "The URL contains a NUL character.", "fields": {}}}


@pytest.mark.parametrize("external_ids, problem", [
    ('{"crm": "a\\u0000b"}', "a string holds a NUL character or an unpaired surrogate"),
    ('{"a\\u0000": "b"}', "a string holds a NUL character or an unpaired surrogate"),
    ('{"crm": "\\ud800"}', "a string holds a NUL character or an unpaired surrogate"),
    ('{"crm": ' + "[" * 40 + "]" * 40 + "}", "nested deeper than 32 levels"),
])
def test_json_that_no_database_column_can_hold_is_a_400_and_nothing_is_written(alice_api, acme, external_ids, problem):
    lead = make_lead(acme)
    before = snapshot()

    created = alice_api.generic("POST", "/crm/leads", '{"first_name": "Ana", "phone": "+5491155550001", "external_ids": %s}' % external_ids,
                                content_type="application/json")
    patched = alice_api.generic("PATCH", f"/crm/leads/{lead.pk}", '{"external_ids": %s}' % external_ids, content_type="application/json")

    expected = {"success": False, "error": {"code": "malformed_request", "message": f"JSON parse error - {problem}.", "fields": {}}}
    assert (created.status_code, created.json()) == (400, expected)
    assert (patched.status_code, patched.json()) == (400, expected)
    assert snapshot() == before


def test_json_nested_deeper_than_the_stack_is_a_400(alice_api, acme):
    response = alice_api.generic("POST", "/crm/leads", "[" * 100_000 + "]" * 100_000, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"] == {"code": "malformed_request", "message": "JSON parse error - nested too deeply.", "fields": {}}


def test_a_body_over_the_upload_limit_is_a_413_in_the_envelope(alice_api, acme, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024

    response = alice_api.post("/crm/leads", {"first_name": "A" * 2000, "phone": "+5491155550001"}, format="json")

    assert response.status_code == 413
    assert response.json() == {"success": False, "error": {"code": "request_too_large", "message": "The request body is too large.", "fields": {}}}
    assert Lead.objects.count() == 0


@pytest.mark.parametrize("key", ["a\x00b", "f" * 41])
def test_a_token_no_token_can_have_is_a_401(acme, key):
    from rest_framework.test import APIClient

    response = APIClient().get("/crm/leads", HTTP_AUTHORIZATION=f"Token {key}")

    assert response.status_code == 401
    assert response.json()["error"] == {"code": "authentication_failed", "message": "Invalid token.", "fields": {}}


@pytest.mark.parametrize("closed_at", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_a_sale_closed_in_an_impossible_year_is_a_field_error(alice_api, acme, closed_at):
    lead = make_lead(acme)

    response = alice_api.post("/crm/sales", {"lead": lead.pk, "amount": "10", "closed_at": closed_at}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"closed_at": ["Enter a moment between 1970-01-01 and 2999-12-31."]}
    assert Sale.objects.count() == 0


@pytest.mark.parametrize("query, field", [("since=0001-01-01&until=0001-01-01", "since"), ("since=2026-01-01&until=9999-12-31", "until")])
def test_stats_dates_at_the_ends_of_the_calendar_are_a_400(alice_api, acme, query, field):
    for url in ("/crm/marketing/stats", "/crm/marketing/stats/roi", "/crm/marketing/campaigns", "/crm/marketing/stats/timeseries"):
        response = alice_api.get(f"{url}?{query}")

        assert response.status_code == 400, url
        assert response.json()["error"]["fields"] == {field: ["Enter a date between 1970-01-01 and 2999-12-31."]}
