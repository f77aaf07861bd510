"""Webhook replay and forgery: the same signed delivery posted again creates nothing twice (leads,
touches, statuses), even once the stored events are gone; a missing or bad X-Hub-Signature-256, or
one over other bytes than the body, is refused and stores nothing."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from django.conf import settings

from automation.models import MessageSend, MessageTemplate
from automation.services.counters import counters_by
from crm_marketing.models import Lead, LeadTouch
from crm_marketing.sandbox.webhooks import ctwa_message_payload, encode, leadgen_payload, status_event, statuses_payload
from crm_marketing.webhook_models import WebhookEvent, WebhookHandlerOutcome
from tests.fixtures.automation import _no_second_guard, acme_whatsapp  # noqa: F401
from tests.fixtures.webhooks import acme_meta, post_signed  # noqa: F401
from tests.test_automation_engine_statuses import sent  # noqa: F401

pytestmark = pytest.mark.django_db


def deliver(client, payload, capture):
    with capture(execute=True):
        response = post_signed(client, payload)
    assert response.status_code == 200, response.content
    return response.json()["data"]


def forget_stored_events() -> None:
    """What a retention clean-up of the webhook log would leave: the domain rows, no event rows."""
    WebhookHandlerOutcome.objects.all().delete()
    WebhookEvent.objects.all().delete()


def lead_rows() -> list[tuple]:
    return list(Lead.objects.values_list("phone", "lead_source", "meta_ad_id"))


def test_a_replayed_leadgen_delivery_makes_one_lead_and_asks_meta_for_it_once(client, acme_meta, meta_sandbox,
                                                                              django_capture_on_commit_callbacks):
    payload = leadgen_payload("800001", "900001", "700001")

    answers = [deliver(client, payload, django_capture_on_commit_callbacks) for _ in range(2)]

    assert answers == [{"received": 1, "stored": 1}, {"received": 1, "stored": 0}]
    assert lead_rows() == [("+5491155550001", "meta_lead_ads", "700001")]
    assert LeadTouch.objects.count() == 1
    assert [r.path for r in meta_sandbox.requests if r.path == "/800001"] == ["/800001"]


def test_a_replayed_click_to_whatsapp_message_makes_one_lead_and_one_touch(client, acme_meta, django_capture_on_commit_callbacks):
    payload = ctwa_message_payload("5491155550002", "Lucas Gómez", "700001", "Plan Pro", "Escribinos", "ARAkClid")

    answers = [deliver(client, payload, django_capture_on_commit_callbacks) for _ in range(2)]

    assert answers == [{"received": 1, "stored": 1}, {"received": 1, "stored": 0}]
    assert lead_rows() == [("+5491155550002", "meta_ctwa", "700001")]
    assert LeadTouch.objects.count() == 1


@pytest.mark.parametrize("kind", ["leadgen", "click to whatsapp"])
def test_a_replay_after_the_stored_events_are_gone_still_makes_no_second_lead_or_touch(client, acme_meta, kind,
                                                                                    django_capture_on_commit_callbacks):
    payload = (leadgen_payload("800001", "900001", "700001") if kind == "leadgen"
               else ctwa_message_payload("5491155550002", "Lucas Gómez", "700001", "Plan Pro", "Escribinos", "ARAkClid"))
    deliver(client, payload, django_capture_on_commit_callbacks)
    before = (lead_rows(), list(LeadTouch.objects.values_list("lead_id", "external_id", "touched_at")))
    forget_stored_events()

    assert deliver(client, payload, django_capture_on_commit_callbacks) == {"received": 1, "stored": 1}
    assert (lead_rows(), list(LeadTouch.objects.values_list("lead_id", "external_id", "touched_at"))) == before


def test_a_replayed_status_moves_the_send_and_its_counters_once_even_after_the_stored_events_are_gone(
        client, sent, django_capture_on_commit_callbacks):
    payload = statuses_payload([status_event(sent.meta_message_id, "delivered", "5491155550001", str(sent.pk))])
    deliver(client, payload, django_capture_on_commit_callbacks)
    delivered_at = MessageSend.objects.get().delivered_at

    assert deliver(client, payload, django_capture_on_commit_callbacks) == {"received": 1, "stored": 0}
    forget_stored_events()
    assert deliver(client, payload, django_capture_on_commit_callbacks) == {"received": 1, "stored": 1}

    assert MessageSend.objects.values_list("status", "delivered_at").get() == ("delivered", delivered_at)
    template = MessageTemplate.objects.get()
    counters = counters_by("template_id", [template.pk])[template.pk]  # counted from the sends
    assert (counters["sent"], counters["delivered"]) == (1, 1)


# -- forgery ----------------------------------------------------------------------------------------------------------
def hex_signature(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def forged(case: str, body: bytes) -> tuple[bytes, dict[str, str]]:
    """(the bytes posted, their headers) for each way a delivery can be unsigned or signed wrongly."""
    secret = settings.META_APP_SECRET
    other_body = encode({"object": "page", "entry": []})
    pretty = json.dumps(json.loads(body), indent=2).encode()  # the same JSON, other bytes
    return {
        "no signature": (body, {}),
        "empty signature": (body, {"HTTP_X_HUB_SIGNATURE_256": ""}),
        "prefix only": (body, {"HTTP_X_HUB_SIGNATURE_256": "sha256="}),
        "no sha256= prefix": (body, {"HTTP_X_HUB_SIGNATURE_256": hex_signature(body, secret)}),
        "another secret": (body, {"HTTP_X_HUB_SIGNATURE_256": "sha256=" + hex_signature(body, "leaked-old-secret")}),
        "truncated": (body, {"HTTP_X_HUB_SIGNATURE_256": "sha256=" + hex_signature(body, secret)[:32]}),
        "sha1 header only": (body, {"HTTP_X_HUB_SIGNATURE": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()}),
        "signature of another body": (body, {"HTTP_X_HUB_SIGNATURE_256": "sha256=" + hex_signature(other_body, secret)}),
        "same JSON, other bytes": (pretty, {"HTTP_X_HUB_SIGNATURE_256": "sha256=" + hex_signature(body, secret)}),
        "signed body with bytes appended": (body + b" ", {"HTTP_X_HUB_SIGNATURE_256": "sha256=" + hex_signature(body, secret)}),
    }[case]


FORGERIES = ["no signature", "empty signature", "prefix only", "no sha256= prefix", "another secret", "truncated",
             "sha1 header only", "signature of another body", "same JSON, other bytes", "signed body with bytes appended"]


@pytest.mark.parametrize("case", FORGERIES)
def test_an_unsigned_or_badly_signed_delivery_is_refused_and_stores_nothing(client, acme_meta, meta_sandbox, case,
                                                                          django_capture_on_commit_callbacks):
    body, headers = forged(case, encode(leadgen_payload("800001", "900001", "700001")))

    with django_capture_on_commit_callbacks(execute=True) as queued:
        response = client.post("/webhooks/meta", data=body, content_type="application/json", **headers)

    assert response.status_code == 401
    assert response.json() == {"success": False, "error": {"code": "invalid_signature", "fields": {},
                                                           "message": "X-Hub-Signature-256 is missing or does not match the body."}}
    assert (WebhookEvent.objects.count(), Lead.objects.count(), queued) == (0, 0, [])
    assert meta_sandbox.requests == []


def test_the_correctly_signed_delivery_of_the_forgery_cases_is_accepted(client, acme_meta, django_capture_on_commit_callbacks):
    """The control of the cases above: the same body, signed right, makes its lead."""
    body = encode(leadgen_payload("800001", "900001", "700001"))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/webhooks/meta", data=body, content_type="application/json",
                               HTTP_X_HUB_SIGNATURE_256="sha256=" + hex_signature(body, settings.META_APP_SECRET))

    assert response.status_code == 200
    assert lead_rows() == [("+5491155550001", "meta_lead_ads", "700001")]
