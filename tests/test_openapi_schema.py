"""The OpenAPI schema at /crm/schema/ says what the API answers: payloads inside the envelope,
the error envelope on the error statuses, filters and ordering as parameters, pages as pages."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

ERROR_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def schema(alice_api) -> dict:
    response = alice_api.get("/crm/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield f"{method.upper()} {path}", operation


def envelope(data: dict) -> dict:
    return {
        "type": "object",
        "required": ["success", "data", "timestamp"],
        "properties": {
            "success": {"type": "boolean", "enum": [True]},
            "data": data,
            "timestamp": {"type": "string", "format": "date-time"},
        },
    }


def json_schema_of(operation: dict, status: str) -> dict:
    return operation["responses"][status]["content"]["application/json"]["schema"]


def parameter_names(operation: dict, location: str = "query") -> list[str]:
    return sorted(p["name"] for p in operation.get("parameters", []) if p["in"] == location)


def test_every_success_response_is_documented_inside_the_envelope(schema):
    unwrapped = [
        (label, status)
        for label, operation in operations(schema)
        for status, response in operation["responses"].items()
        if status.startswith("2") and "content" in response
        and json_schema_of(operation, status).get("required") != ["success", "data", "timestamp"]
    ]

    assert unwrapped == []


def test_every_operation_documents_the_error_envelope_on_the_errors_any_call_can_meet(schema):
    missing = [
        (label, status)
        for label, operation in operations(schema)
        for status in ("400", "401", "403", "429")
        if operation["responses"].get(status, {}).get("content", {}).get("application/json", {}).get("schema") != ERROR_REF
    ]

    assert missing == []
    assert schema["components"]["schemas"]["ErrorEnvelope"] == {
        "type": "object",
        "required": ["success", "error"],
        "properties": {
            "success": {"type": "boolean", "enum": [False]},
            "error": {
                "type": "object",
                "required": ["code", "message", "fields"],
                "properties": {
                    "code": {"type": "string", "description": "snake_case, e.g. validation_error, not_found, rate_limited"},
                    "message": {"type": "string"},
                    "fields": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
                },
            },
        },
    }


def test_statuses_follow_the_operation_404_with_an_id_409_and_413_on_writes_502_and_503_where_meta_is_called(schema):
    documented = {label: sorted(operation["responses"]) for label, operation in operations(schema)}

    assert documented["GET /crm/leads/"] == ["200", "400", "401", "403", "429"]
    assert documented["GET /crm/leads/{id}/"] == ["200", "400", "401", "403", "404", "429"]
    assert documented["POST /crm/leads/"] == ["201", "400", "401", "403", "409", "413", "429"]
    assert documented["PATCH /crm/leads/{id}/"] == ["200", "400", "401", "403", "404", "409", "413", "429"]
    assert documented["POST /crm/marketing/sync"] == ["202", "400", "401", "403", "409", "413", "429", "503"]
    assert documented["GET /crm/marketing/meta-accounts"] == ["200", "400", "401", "403", "429", "502", "503"]
    assert documented["GET /crm/marketing/stats/timeseries"] == ["200", "400", "401", "403", "404", "429"]
    assert schema["paths"]["/crm/leads/"]["get"]["responses"]["429"]["headers"]["Retry-After"]["required"] is True


def test_the_campaign_list_is_documented_as_the_page_it_answers(schema, alice_api):
    operation = schema["paths"]["/crm/marketing/campaigns"]["get"]

    assert json_schema_of(operation, "200") == envelope({"$ref": "#/components/schemas/CampaignPage"})
    assert schema["components"]["schemas"]["CampaignPage"]["required"] == [
        "currency_mismatch", "limit", "offset", "results", "total", "unconverted_currencies"]
    assert schema["components"]["schemas"]["CampaignPage"]["properties"]["results"] == {
        "type": "array", "items": {"$ref": "#/components/schemas/CampaignStat"}}
    assert parameter_names(operation) == ["limit", "offset", "ordering", "since", "status", "time_range", "until"]
    assert sorted(alice_api.get("/crm/marketing/campaigns").json()["data"]) == [
        "currency_mismatch", "limit", "offset", "results", "total", "unconverted_currencies"]


def test_crm_lists_document_their_filters_ordering_and_page_inside_the_envelope(schema):
    leads = schema["paths"]["/crm/leads/"]["get"]
    sales = schema["paths"]["/crm/sales/"]["get"]
    ordering = next(p for p in leads["parameters"] if p["name"] == "ordering")

    assert parameter_names(leads) == [
        "created_after", "created_before", "email", "lead_source", "limit", "meta_campaign_id", "offset", "ordering",
        "phone", "seller", "status"]
    assert parameter_names(leads, "header") == ["X-Account"]
    assert parameter_names(sales) == ["closed_after", "closed_before", "lead", "limit", "offset", "ordering", "status"]
    assert ordering["schema"]["pattern"] == (
        "^ *-?(?:created_at|first_name|last_name|status|updated_at) *(?:, *-?(?:created_at|first_name|last_name|status|updated_at) *)*$")
    assert json_schema_of(leads, "200") == envelope({"$ref": "#/components/schemas/PaginatedLeadList"})
    assert schema["components"]["schemas"]["PaginatedLeadList"]["required"] == ["results", "total", "limit", "offset"]


def test_request_bodies_leave_out_the_read_only_fields_the_api_refuses(schema):
    body = schema["paths"]["/crm/leads/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    properties = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["properties"]

    assert not {"id", "name", "created_at", "updated_at", "opted_out_at", "status_changed_at"} & set(properties)
    assert {"first_name", "phone", "email", "status", "seller", "external_ids"} <= set(properties)


def test_operations_are_described_by_their_own_docstring_not_the_base_class(schema):
    descriptions = {label: operation.get("description", "") for label, operation in operations(schema)}

    assert "For views without a model" not in " ".join(descriptions.values())
    assert descriptions["POST /crm/marketing/sync"].startswith("POST: 202 {task_id}")


def test_a_stats_period_documents_whether_it_is_complete(schema):
    period = schema["components"]["schemas"]["Period"]

    assert period["required"] == ["complete", "since", "until"]
    assert period["properties"]["complete"]["type"] == "boolean"
    assert "today" in period["properties"]["complete"]["description"]
