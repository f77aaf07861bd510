"""schemathesis against the OpenAPI schema of every /crm/ operation, as alice (ceo of acme, with
data and a Meta connection on the sandbox), in-process through the WSGI app on the test database.

Each operation is its own test (a fresh transaction, so a destructive call such as disconnect
cannot spoil another operation's run): schemathesis' coverage phase (boundary and invalid values of
every parameter and body field) and FUZZ_EXAMPLES generated cases (default 25), valid and invalid.
Three checks: no 5xx, the status is one the schema documents, the body conforms to its schema. A
failure found here gets fixed and kept as a plain test in tests/test_fuzz_regressions.py.
"""
from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from crm_marketing.models import Lead, Opportunity, Sale
from marketing.models import Campaign
from meta_oauth.models import MetaConnection
from tests.test_stats import build_golden

# The suite's run is the same every time (derandomized, no example database on disk); set
# FUZZ_RANDOM=1 and a larger FUZZ_EXAMPLES to explore further by hand.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def crm_schema() -> dict:
    """The schema /crm/schema/ serves, built in-process (no request needed to read it)."""
    return SchemaGenerator().get_schema(request=None, public=True)


schema = schemathesis.openapi.from_dict(crm_schema())
schema.app = get_wsgi_application()

# Path parameters that name a row alice has, filled by the `world` fixture: the strategy draws
# either schemathesis' value (mostly a 404) or one of these, so the 200 paths are fuzzed too.
KNOWN_PATH_VALUES: dict[str, list] = {}


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    known = KNOWN_PATH_VALUES.get(context.operation.path, [])
    if not known or not path_parameters:
        return st.just(path_parameters)
    (name,) = list(path_parameters)[:1]
    return st.sampled_from([path_parameters, *({**path_parameters, name: value} for value in known)])


@pytest.fixture
def world(acme, alice, meta_sandbox, settings):
    """acme's golden dataset (campaigns, insights, leads, opportunities, sales) and a live sandbox
    connection; alice's token."""
    settings.META_MAX_RETRIES = 1
    settings.META_MAX_BACKOFF_SECONDS = 1
    settings.API_RATE_LIMIT = "100000/m"
    build_golden(acme)
    connection = MetaConnection.objects.get(account=acme)  # the golden data's, with a live sandbox token now
    connection.meta_user_id = "10001"  # the sandbox's user with businesses and ad accounts
    connection.set_token(meta_sandbox.issue_token(connection.meta_user_id))
    connection.save()
    KNOWN_PATH_VALUES.clear()
    KNOWN_PATH_VALUES.update({
        "/crm/leads/{id}/": list(Lead.objects.filter(account=acme).values_list("id", flat=True)[:5]),
        "/crm/opportunities/{id}/": list(Opportunity.objects.filter(account=acme).values_list("id", flat=True)[:5]),
        "/crm/sales/{id}/": list(Sale.objects.filter(account=acme).values_list("id", flat=True)[:5]),
        "/crm/marketing/campaigns/{campaign_id}": list(Campaign.objects.filter(account=acme).values_list("meta_campaign_id", flat=True)),
        "/crm/marketing/campaigns/{campaign_id}/insights": list(Campaign.objects.filter(account=acme).values_list("meta_campaign_id", flat=True)),
    })
    token, _ = Token.objects.get_or_create(user=alice)
    # The WSGI handler closes the database connection after each request, which would end the
    # test's transaction; Django's test client unhooks the same signal handler for the same reason.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield {"Authorization": f"Token {token.key}"}
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.django_db
@schema.include(path_regex="^/crm/").parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
          derandomize=not os.environ.get("FUZZ_RANDOM"))
def test_every_crm_operation_answers_within_its_schema(case, world):
    case.call_and_validate(headers=world, checks=CHECKS)
