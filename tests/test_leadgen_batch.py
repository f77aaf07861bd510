"""A delivery of many Lead Ads form fills: the webhook drain hands them to marketing's leadgen handler in one
call, which reads acme's token once and fetches the leads in Graph batch requests (up to 50 each), then
records each lead on its own: a lead Meta cannot give fails alone, a page nobody has is ignored."""
from __future__ import annotations

import pytest

from crm_marketing.models import Lead, WebhookEvent
from crm_marketing.sandbox import leadgen_payload
from tests.fixtures.webhooks import acme_meta, post_signed  # noqa: F401

pytestmark = pytest.mark.django_db


def one_delivery(*changes: dict) -> dict:
    """Meta's page entry with several leadgen changes."""
    payload = leadgen_payload(*changes[0])
    payload["entry"][0]["changes"] = [leadgen_payload(*args)["entry"][0]["changes"][0] for args in changes]
    return payload


def test_thirty_form_fills_in_one_delivery_are_thirty_leads_fetched_in_graph_batches(
        client, acme, acme_meta, meta_sandbox, settings, django_capture_on_commit_callbacks):
    settings.WEBHOOK_DRAIN_BATCH = 25  # the drain claims 25, then the other 5
    lead_ids = [meta_sandbox.add_lead("900001", "700001", phone=f"+54911666{n:05d}") for n in range(29)]
    meta_sandbox.state.requests.clear()
    changes = [(lead_id, "900001", "700001") for lead_id in lead_ids]
    changes.insert(7, ("899999", "900001", "700001"))  # a lead Meta no longer has
    changes.append(("800002", "900001", "700001", "1599999"))  # a page no account has

    with django_capture_on_commit_callbacks(execute=True):
        answer = post_signed(client, one_delivery(*changes))

    assert answer.status_code == 200
    assert Lead.objects.filter(account=acme, lead_source="meta_lead_ads").count() == 29
    assert set(Lead.objects.values_list("meta_campaign_id", flat=True)) == {"400001"}  # the campaign of ad 700001
    graph = [(r.method, r.path) for r in meta_sandbox.requests]
    assert len(graph) == 2 and {method for method, _ in graph} == {"POST"}  # one batch per claimed batch, no GET per lead
    by_status = {}
    for status, error in WebhookEvent.objects.values_list("status", "error"):
        by_status.setdefault(status, []).append(error)
    assert {status: len(errors) for status, errors in by_status.items()} == {"processed": 29, "failed": 1, "ignored": 1}
    assert "899999" in by_status["failed"][0]
    assert by_status["ignored"] == ["no account has the Facebook page 1599999 (leadgen 800002)"]
