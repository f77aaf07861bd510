"""/webhooks/meta: subscription check, signature, storage, dedupe and the handler registry."""
from __future__ import annotations

import io
import logging

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Task

from crm_marketing import tasks, webhooks
from crm_marketing.models import Lead, LeadTouch, WebhookEvent
from crm_marketing.sandbox import ctwa_message_payload, leadgen_payload, sign
from crm_marketing.sandbox.webhooks import encode, status_event, statuses_payload
from tests.fixtures.webhooks import acme_meta, post_signed  # noqa: F401

CHALLENGE = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": "sandbox-verify-token"}


@pytest.fixture(autouse=True)
def _verify_token(settings):
    settings.META_WEBHOOK_VERIFY_TOKEN = "sandbox-verify-token"


def stored(event: WebhookEvent) -> dict:
    return {"object": event.object, "field": event.field, "entry_id": event.entry_id, "dedupe_key": event.dedupe_key,
            "status": event.status, "result": event.result, "error": event.error, "account": event.account_id}


# -- subscription -------------------------------------------------------------------------------------------
def test_the_subscription_check_answers_the_challenge_in_plain_text(client):
    response = client.get("/webhooks/meta", CHALLENGE)

    assert (response.status_code, response["Content-Type"], response.content) == (200, "text/plain", b"1158201444")


@pytest.mark.parametrize("params", [
    {**CHALLENGE, "hub.verify_token": "wrong"},
    {**CHALLENGE, "hub.mode": "unsubscribe"},
    {"hub.challenge": "1158201444"},
])
def test_the_subscription_check_with_a_wrong_token_or_mode_is_forbidden(client, params):
    response = client.get("/webhooks/meta", params)

    assert response.status_code == 403
    assert response.json() == {"success": False, "error": {"code": "permission_denied", "message": "Wrong verify token.", "fields": {}}}


# -- signature and body -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("signature", [False, "", "sha256=", "sha1=abc", "sha256=" + "0" * 64, "wrong-secret"])
def test_a_missing_or_wrong_signature_is_401_and_stores_nothing(client, db, settings, signature):
    payload = leadgen_payload("800001", "900001", "700001")
    if signature == "wrong-secret":
        signature = sign(encode(payload), "not-the-app-secret")

    response = post_signed(client, payload, signature=signature)

    assert response.status_code == 401
    assert response.json() == {"success": False, "error": {
        "code": "invalid_signature", "message": "X-Hub-Signature-256 is missing or does not match the body.", "fields": {}}}
    assert not WebhookEvent.objects.exists()


def test_a_signature_over_other_bytes_than_the_body_is_401(client, db):
    payload = leadgen_payload("800001", "900001", "700001")
    signature = sign(encode(payload) + b" ", "sandbox-secret")

    assert post_signed(client, payload, signature=signature).status_code == 401
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"object": "page"}', b'{"entry": "x"}'])
def test_a_signed_body_that_is_not_a_meta_event_is_400(client, db, body):
    response = post_signed(client, body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
    assert not WebhookEvent.objects.exists()


def test_only_get_and_post_are_allowed(client, db):
    assert client.put("/webhooks/meta", data=b"{}").status_code == 405


def test_webhooks_are_rate_limited_per_ip_with_retry_after(client, db, settings):
    settings.WEBHOOK_RATE_LIMIT = "2/m"
    meta = {"REMOTE_ADDR": "198.51.100.7"}  # an address of its own, so no other test's requests count
    codes = [client.get("/webhooks/meta", CHALLENGE, **meta).status_code for _ in range(3)]

    response = client.get("/webhooks/meta", CHALLENGE, **meta)
    assert codes == [200, 200, 429]
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "rate_limited"


def test_a_body_over_the_upload_limit_is_a_413_and_stores_nothing(client, db, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    payload = {"object": "page", "entry": [{"id": "1", "changes": [{"field": "feed", "value": {"text": "x" * 2000}}]}]}

    response = post_signed(client, payload)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert not WebhookEvent.objects.exists()


def test_a_signed_body_nested_deeper_than_any_meta_event_is_400(client, db):
    response = post_signed(client, b'{"entry": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
    assert not WebhookEvent.objects.exists()


def test_a_body_one_level_deeper_than_a_stored_event_may_be_is_400_and_one_at_the_limit_is_stored(client, db):
    # Plain bodies (no escape to rewrite) are only depth-checked: the same limit as the rewriting path.
    def nested(levels: int) -> bytes:  # the innermost value at this level (the body itself is level 1)
        inner = b'"x"'
        for _ in range(levels - 6):
            inner = b"[" + inner + b"]"
        return (b'{"object": "page", "entry": [{"id": "1", "changes": [{"field": "feed", "value": ' + inner + b"}]}]}")

    too_deep, at_limit = post_signed(client, nested(33)), post_signed(client, nested(32))

    assert (too_deep.status_code, at_limit.status_code) == (400, 200)
    assert WebhookEvent.objects.count() == 1


def test_a_lone_surrogate_escaped_in_capitals_is_kept_as_a_replacement_character(client, db):
    response = post_signed(client, b'{"object": "page", "entry": [{"id": "1", "changes": [{"field": "feed", "value": {"text": "hi \\uD83D"}}]}]}')

    assert response.status_code == 200
    assert WebhookEvent.objects.get().payload == {"field": "feed", "value": {"text": "hi \ufffd"}}


def test_without_an_app_secret_no_signature_is_valid(client, db, settings):
    settings.META_APP_SECRET = ""
    payload = leadgen_payload("800001", "900001", "700001")

    response = post_signed(client, payload, signature=sign(encode(payload), ""))

    assert response.status_code == 401
    assert not WebhookEvent.objects.exists()


def test_without_a_verify_token_the_subscription_check_is_forbidden(client, settings):
    settings.META_WEBHOOK_VERIFY_TOKEN = ""

    response = client.get("/webhooks/meta", {**CHALLENGE, "hub.verify_token": ""})

    assert response.status_code == 403


def test_text_no_database_can_store_and_an_impossible_time_are_kept_as_near_as_possible(client, db):
    # Meta relays what people type; a NUL or half an emoji must not cost the whole delivery.
    body = (b'{"object": "whatsapp_business_account", "entry": [{"id": "WABA\\u0000", "time": 100000000000000000000000, "changes": ['
            b'{"field": "feed", "value": {"text": "hola\\u0000 \\ud83d", "k\\u0000": 1}}]}]}')

    response = post_signed(client, body)

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert (event.entry_id, event.entry_time) == ("WABA\ufffd", None)
    assert event.payload == {"field": "feed", "value": {"text": "hola\ufffd \ufffd", "k\ufffd": 1}}


# -- storage, dedupe and processing ------------------------------------------------------------------------------
def test_a_change_of_an_unknown_field_is_stored_as_ignored_with_a_log_line(client, db, caplog, django_capture_on_commit_callbacks):
    caplog.set_level(logging.INFO, logger="crm_marketing.webhooks")
    payload = {"object": "page", "entry": [{"id": "1500001", "time": 1795000000, "changes": [
        {"field": "feed", "value": {"item": "status", "verb": "add", "post_id": "1500001_1"}}]}]}

    with django_capture_on_commit_callbacks(execute=True):
        response = post_signed(client, payload)

    body = response.json()
    assert (response.status_code, body) == (200, {"success": True, "data": {"received": 1, "stored": 1}, "timestamp": body["timestamp"]})
    event = WebhookEvent.objects.get()
    assert stored(event) == {"object": "page", "field": "feed", "entry_id": "1500001", "dedupe_key": event.dedupe_key,
                             "status": "ignored", "result": "", "error": "no handler registered for field 'feed'", "account": None}
    assert event.payload == payload["entry"][0]["changes"][0]
    assert event.dedupe_key.startswith("sha256:")
    assert any("ignored: no handler registered for field 'feed'" in r.getMessage() for r in caplog.records)


def test_a_redelivered_change_of_an_unknown_field_is_stored_once(client, db, django_capture_on_commit_callbacks):
    payload = {"object": "page", "entry": [{"id": "1500001", "changes": [{"field": "feed", "value": {"post_id": "1"}}]}]}

    with django_capture_on_commit_callbacks(execute=True):
        answers = [post_signed(client, payload).json()["data"] for _ in range(2)]

    assert answers == [{"received": 1, "stored": 1}, {"received": 1, "stored": 0}]
    assert WebhookEvent.objects.count() == 1


def test_each_change_of_a_delivery_is_stored_with_metas_id_as_its_dedupe_key(client, db):
    payload = leadgen_payload("800001", "900001", "700001")
    payload["entry"].append(leadgen_payload("800002", "900001", "700001")["entry"][0])
    payload["entry"][1]["changes"].append({"field": "message_template_status_update", "value": {
        "event": "PAUSED", "message_template_id": 1100001, "message_template_name": "seguimiento_lead_v1"}})
    payload["entry"][1]["time"] = 1795002000

    response = post_signed(client, payload)  # the processing tasks are queued on commit, which never comes here

    assert response.json()["data"] == {"received": 3, "stored": 3}
    assert sorted(WebhookEvent.objects.values_list("field", "dedupe_key", "status")) == [
        ("leadgen", "800001", "received"), ("leadgen", "800002", "received"),
        ("message_template_status_update", "1100001:PAUSED:1795002000", "received")]


def test_whatsapp_dedupe_keys_are_the_message_id_the_status_and_the_preference():
    assert webhooks.dedupe_key("messages", {"messages": [{"id": "wamid.A"}]}) == "msg:wamid.A"
    assert webhooks.dedupe_key("messages", {"statuses": [{"id": "wamid.A", "status": "read"}, {"id": "wamid.B", "status": "failed"}]}) \
        == "status:wamid.A:read|status:wamid.B:failed"
    assert webhooks.dedupe_key("user_preferences", {"user_preferences": [{"wa_id": "549", "value": "stop", "timestamp": 1795003000}]}) \
        == "549:stop:1795003000"


def _recorder(outcome, name: str = "handler"):
    """A handler that answers ``outcome``; its ``name`` is its identity in the outcome table."""
    def handler(event):
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    handler.__qualname__ = name
    return handler


@pytest.mark.parametrize("outcomes, expected", [
    ([None, "did one thing", "did another"], ("processed", "did one thing; did another", "")),
    ([None, webhooks.IgnoreEvent("not ours")], ("ignored", "", "not ours")),
    ([None, None], ("ignored", "", "no handler took this x_test change")),
    (["did one thing", webhooks.RetryLater("Meta is busy", retry_after=120)], ("failed", "did one thing", "Meta is busy")),
    (["did one thing", ValueError("a bug")], ("failed", "did one thing", "ValueError: a bug")),
])
def test_every_handler_registered_for_a_field_gets_the_event(client, db, django_capture_on_commit_callbacks, outcomes, expected):
    handlers = [_recorder(outcome, f"handler_{n}") for n, outcome in enumerate(outcomes)]
    for handler in handlers:
        webhooks.register_handler("x_test", handler)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            post_signed(client, {"object": "page", "entry": [{"id": "1", "changes": [{"field": "x_test", "value": {"n": 1}}]}]})
    finally:
        for handler in handlers:
            webhooks.unregister_handler("x_test", handler)

    event = WebhookEvent.objects.get()
    assert (event.status, event.result, event.error) == expected
    assert event.attempts == 1
    assert (event.next_attempt_at is not None) == isinstance(outcomes[-1], webhooks.RetryLater)


def test_a_failed_event_is_retried_by_the_schedule_once_due(db, django_capture_on_commit_callbacks):
    attempts = []

    def flaky(event):
        attempts.append(event.attempts)
        if len(attempts) == 1:
            raise webhooks.RetryLater("Meta is busy")
        return "done"

    webhooks.register_handler("x_flaky", flaky)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            webhooks.store_changes({"object": "page", "entry": [{"id": "1", "changes": [{"field": "x_flaky", "value": {}}]}]})
        event = WebhookEvent.objects.get()
        assert (event.status, event.error) == ("failed", "Meta is busy")

        assert tasks.retry_webhook_events() == "queued 0 webhook event(s)"  # not due yet
        WebhookEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
        assert tasks.retry_webhook_events() == "queued 1 webhook event(s)"
    finally:
        webhooks.unregister_handler("x_flaky", flaky)

    event.refresh_from_db()
    assert (event.status, event.result, event.error, event.attempts, attempts) == ("processed", "done", "", 2, [1, 2])


def test_a_processed_event_is_not_processed_twice(db):
    calls = []

    def once(event):
        calls.append(event.pk)
        return "done"

    webhooks.register_handler("x_once", once)
    try:
        _, (event_id,) = webhooks.store_changes({"object": "page", "entry": [{"id": "1", "changes": [{"field": "x_once", "value": {}}]}]})
        first = tasks.process_webhook_event(event_id)
        second = tasks.process_webhook_event(event_id)
    finally:
        webhooks.unregister_handler("x_once", once)

    assert (first, second, calls) == (f"event {event_id}: processed (done)",
                                      f"event {event_id}: not claimable (already taken or finished)", [event_id])


def test_ignored_events_can_be_run_again_by_the_command(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        webhooks.store_changes({"object": "page", "entry": [{"id": "1", "changes": [{"field": "x_later", "value": {}}]}]})
    assert WebhookEvent.objects.get().status == "ignored"

    handler, out = _recorder("handled now"), io.StringIO()
    webhooks.register_handler("x_later", handler)
    try:
        call_command("process_webhook_events", "--status", "ignored", stdout=out)
    finally:
        webhooks.unregister_handler("x_later", handler)

    assert out.getvalue() == "1 ignored event(s) processed again: 1 processed\n"
    assert WebhookEvent.objects.get().result == "handled now"


def test_a_retry_after_one_messages_handler_asked_for_it_runs_only_that_handler(client, db, django_capture_on_commit_callbacks):
    calls = []

    def marketing_side(event):
        calls.append("marketing_side")
        return "referral recorded"

    def automation_side(event):
        calls.append("automation_side")
        if calls.count("automation_side") == 1:
            raise webhooks.RetryLater("Meta is busy", retry_after=60)
        return "status applied"

    # The installed automation app's own statuses handler stands aside: automation_side plays it here.
    real_automation = [(h, webhooks.batch_form(h)) for h in webhooks.handlers_for("messages") if h.__module__.startswith("automation.")]
    for handler, _ in real_automation:
        webhooks.unregister_handler("messages", handler)
    for handler in (marketing_side, automation_side):
        webhooks.register_handler("messages", handler)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            post_signed(client, statuses_payload(status_event("wamid.S1", "delivered", "5491155550001")))
        event = WebhookEvent.objects.get()
        first = (event.status, event.result, event.error)
        WebhookEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
        assert tasks.retry_webhook_events() == "queued 1 webhook event(s)"
    finally:
        for handler in (marketing_side, automation_side):
            webhooks.unregister_handler("messages", handler)
        for handler, many in real_automation:
            webhooks.register_handler("messages", handler, many=many)

    event.refresh_from_db()
    assert first == ("failed", "referral recorded", "Meta is busy")
    assert calls == ["marketing_side", "automation_side", "automation_side"]
    assert (event.status, event.result, event.error, event.attempts) == ("processed", "referral recorded; status applied", "", 2)
    prefix = "tests.test_webhooks.test_a_retry_after_one_messages_handler_asked_for_it_runs_only_that_handler.<locals>."
    assert sorted(event.outcomes.values_list("handler", "status", "result", "attempts")) == [
        ("marketing.handlers.handle_messages", "skipped", "", 1),  # statuses are not marketing's: final, not re-run
        (prefix + "automation_side", "processed", "status applied", 2),
        (prefix + "marketing_side", "processed", "referral recorded", 1),
    ]


def five_hundred_statuses() -> dict:
    """One delivery carrying 500 status changes (Meta batches them under one entry)."""
    payload = statuses_payload(status_event("wamid.B0", "sent", "5491155550001"))
    changes = payload["entry"][0]["changes"]
    for n in range(1, 500):
        changes.append(statuses_payload(status_event(f"wamid.B{n}", "sent", "5491155550001"))["entry"][0]["changes"][0])
    return payload


def test_a_delivery_of_500_changes_is_stored_as_500_events_processed_by_one_task(client, db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_signed(client, five_hundred_statuses())

    assert response.json()["data"] == {"received": 500, "stored": 500}
    assert len(callbacks) == 1
    assert Task.objects.count() == 0  # its success is not kept in django-q2's results: the events record the outcome
    assert sorted(WebhookEvent.objects.values_list("dedupe_key", flat=True)) == sorted(f"status:wamid.B{n}:sent" for n in range(500))
    assert set(WebhookEvent.objects.values_list("status", "attempts")) == {("ignored", 1)}


def test_a_redelivery_of_the_500_changes_stores_nothing_and_queues_nothing(client, db, django_capture_on_commit_callbacks):
    payload = five_hundred_statuses()
    post_signed(client, payload)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_signed(client, payload)

    assert response.json()["data"] == {"received": 500, "stored": 0}
    assert (callbacks, WebhookEvent.objects.count()) == ([], 500)


# -- end to end, over real HTTP -------------------------------------------------------------------------------------
def test_a_leadgen_fired_by_the_sandbox_at_the_live_server_becomes_a_lead(live_server, acme_meta, meta_sandbox):
    url = f"{live_server.url}/webhooks/meta"

    answers = [meta_sandbox.fire_webhook(url, leadgen_payload("800001", "900001", "700001")) for _ in range(2)]

    assert [(a.status_code, a.json()["data"]) for a in answers] == [(200, {"received": 1, "stored": 1}), (200, {"received": 1, "stored": 0})]
    lead = Lead.objects.get()
    assert (lead.account_id, lead.phone, lead.lead_source, lead.meta_ad_id) == (acme_meta.account_id, "+5491155550001", "meta_lead_ads", "700001")
    assert LeadTouch.objects.count() == 1
    assert stored(WebhookEvent.objects.get()) == {
        "object": "page", "field": "leadgen", "entry_id": "1500001", "dedupe_key": "800001", "status": "processed",
        "result": f"lead {lead.pk} created from leadgen 800001", "error": "", "account": acme_meta.account_id}


def test_a_ctwa_message_fired_with_a_wrong_secret_is_rejected_over_http(live_server, meta_sandbox):
    payload = ctwa_message_payload("5491155550002", "Lucas Gómez", "700002", "Plan Pro", "Escribinos", "ARAk")

    answer = meta_sandbox.fire_webhook(f"{live_server.url}/webhooks/meta", payload, app_secret="leaked-old-secret")

    assert answer.status_code == 401
    assert not WebhookEvent.objects.exists()


def test_a_superuser_sees_what_each_handler_made_of_an_event_in_the_admin(client, db, django_capture_on_commit_callbacks):
    from django.contrib.auth import get_user_model

    with django_capture_on_commit_callbacks(execute=True):
        post_signed(client, statuses_payload(status_event("wamid.S9", "read", "5491155550001")))
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))

    page = client.get(f"/admin/crm_marketing/webhookevent/{WebhookEvent.objects.get().pk}/change/")

    assert page.status_code == 200
    assert "marketing.handlers.handle_messages" in page.content.decode()
