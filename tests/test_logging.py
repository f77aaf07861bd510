"""Log lines are JSON with the request id and the account id, and never hold a token or a full phone number."""
from __future__ import annotations

import io
import json
import logging

import pytest
from django.test import override_settings

from crm_marketing.logging import JsonFormatter, RedactSecretsFilter, mask_phone, redact

SANDBOX_USER_TOKEN = "EAAsbxUserQk3xYv9ZpLm2Rt8WnB4cDfGhJs"
SANDBOX_PAGE_TOKEN = "EAAsandboxPageT0k3nForTheLeadsPage"


@pytest.fixture
def json_log_lines():
    """The console handler settings.LOGGING built (its filters included), writing JSON into a buffer."""
    handler = next(h for h in logging.getLogger().handlers if any(isinstance(f, RedactSecretsFilter) for f in h.filters))
    buffer = io.StringIO()
    old_stream, old_formatter = handler.setStream(buffer), handler.formatter
    handler.setFormatter(JsonFormatter())
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        handler.setStream(old_stream)
        handler.setFormatter(old_formatter)


def test_a_request_log_line_carries_the_request_id_from_the_proxy_and_the_account_of_the_caller(alice_api, acme, json_log_lines):
    with override_settings(LOG_REQUESTS=True):
        response = alice_api.get("/crm/leads", HTTP_X_REQUEST_ID="req-7f3a-42")

    line = next(line for line in json_log_lines() if line["logger"] == "crm_marketing.request")
    assert response.status_code == 200
    assert response["X-Request-ID"] == "req-7f3a-42"
    assert {k: v for k, v in line.items() if k not in ("time", "duration_ms")} == {
        "level": "INFO", "logger": "crm_marketing.request", "message": "GET /crm/leads 200",
        "request_id": "req-7f3a-42", "account_id": acme.pk, "method": "GET", "path": "/crm/leads", "status": 200,
    }
    assert isinstance(line["duration_ms"], float)


def test_a_request_id_that_is_not_a_plain_short_token_is_replaced_by_a_fresh_one(anonymous_api, db):
    response = anonymous_api.get("/healthz", HTTP_X_REQUEST_ID='bad id"\r\n<script>')
    long = anonymous_api.get("/healthz", HTTP_X_REQUEST_ID="x" * 200)

    assert len(response["X-Request-ID"]) == 32 and response["X-Request-ID"].isalnum()
    assert len(long["X-Request-ID"]) == 32


def test_log_lines_outside_a_request_carry_no_request_or_account(json_log_lines):
    logging.getLogger("marketing.tasks").info("queued %d syncs", 3)

    assert [{k: v for k, v in line.items() if k != "time"} for line in json_log_lines()] == [
        {"level": "INFO", "logger": "marketing.tasks", "message": "queued 3 syncs", "request_id": None, "account_id": None},
    ]


def test_tokens_credentials_and_phone_numbers_are_masked_in_the_message_its_arguments_extras_and_traceback(json_log_lines):
    log = logging.getLogger("crm_marketing.graph")
    log.warning("Graph call %s failed for %s with token %s",
                f"https://graph.facebook.com/v26.0/me/accounts?fields=id&access_token={SANDBOX_USER_TOKEN}&limit=5",
                "+5491155550001", SANDBOX_PAGE_TOKEN,
                extra={"headers": f"{{'Authorization': 'Bearer {SANDBOX_USER_TOKEN}'}}", "payload": '{"from": "5491155550002"}'})
    try:
        raise ValueError(f"Meta refused token {SANDBOX_PAGE_TOKEN} for wa_id=5491155550003")
    except ValueError:
        log.exception("send to %s failed", "+14155552671")

    warning, error = json_log_lines()
    assert warning["message"] == ("Graph call https://graph.facebook.com/v26.0/me/accounts?fields=id&access_token=[redacted]&limit=5 "
                                  "failed for +54911*****001 with token EAA[redacted]")
    assert warning["headers"] == "{'Authorization': '[redacted]'}"
    assert warning["payload"] == '{"from": "54911*****002"}'
    assert error["message"] == "send to +1415****671 failed"
    assert error["exception"].endswith("ValueError: Meta refused token EAA[redacted] for wa_id=54911*****003")
    everything = json.dumps([warning, error])
    for secret in (SANDBOX_USER_TOKEN, SANDBOX_PAGE_TOKEN, "5491155550001", "5491155550002", "5491155550003", "4155552671"):
        assert secret[3:] not in everything


def test_the_plain_format_is_masked_too():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token %s Authorization: Token %s", (SANDBOX_USER_TOKEN, "9f8e7d6c5b4a39281716"), None)
    RedactSecretsFilter().filter(record)

    assert logging.Formatter("%(message)s").format(record) == "token EAA[redacted] Authorization: [redacted]"


def test_phone_masks_keep_the_country_and_area_and_the_last_three_digits():
    assert mask_phone("+5491155550001") == "+54911*****001"
    assert mask_phone("+14155552671") == "+1415****671"
    assert mask_phone("+34600111222") == "+3460****222"
    assert redact("ids 120210000000001 and 9876543210 stay") == "ids 120210000000001 and 9876543210 stay"  # Meta ids are not phones
    assert redact("error code=190 subcode=463") == "error code=190 subcode=463"
    assert redact("GET /callback?state=abc&code=AQDx9secret") == "GET /callback?state=abc&code=[redacted]"
