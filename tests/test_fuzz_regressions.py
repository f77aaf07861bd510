"""Cases the schemathesis run (tests/test_fuzz_api.py) found, kept as plain tests: each failed
before its fix (in the code, or in the schema when the schema was what lied)."""
from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

pytestmark = pytest.mark.django_db

NOT_FOUND = {"success": False, "error": {"code": "not_found", "message": "Not found.", "fields": {}}}


def documented_statuses(path: str, method: str) -> list[str]:
    return sorted(SchemaGenerator().get_schema(request=None, public=True)["paths"][path][method]["responses"])


def test_a_timeseries_for_a_campaign_alice_does_not_have_is_a_404_the_schema_documents(alice_api):
    # Found as: GET /crm/marketing/stats/timeseries?campaign_id=0&since=2000-01-01&until=2000-01-01 -> 404,
    # while the schema listed 200, 400, 401, 403, 429 (no path parameter, so no 404 was assumed).
    response = alice_api.get("/crm/marketing/stats/timeseries?campaign_id=0&since=2000-01-01&until=2000-01-01")

    assert (response.status_code, response.json()) == (404, NOT_FOUND)
    assert "404" in documented_statuses("/crm/marketing/stats/timeseries", "get")
