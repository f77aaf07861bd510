"""Structured logs: one JSON object per line, with the request id and the account id, and no secrets.

- ``RequestIdMiddleware`` takes a sane ``X-Request-ID`` from the proxy (or makes one), keeps it in a
  context variable for the request and echoes it in the response.
- The account-scoped API bases call ``bind_account`` once ``request.account`` resolves.
- ``RequestContextFilter`` copies both onto every record; ``RedactSecretsFilter`` masks Meta
  tokens, ``access_token=`` values, Authorization credentials and phone numbers in the message,
  its arguments, the traceback and any ``extra`` strings, whatever the formatter.
- ``JsonFormatter`` writes the line (``LOG_FORMAT=json``, the production default).
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from django.conf import settings
from django.core.signals import request_finished

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
account_id_var: contextvars.ContextVar[int | None] = contextvars.ContextVar("account_id", default=None)

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
request_log = logging.getLogger("crm_marketing.request")


def bind_account(account_id: int | None) -> None:
    """Tag the rest of this request's log lines with the account it acts for."""
    account_id_var.set(account_id)


def sane_request_id(value: str | None) -> str:
    """The proxy's id when it is short and plain (it ends up in logs and headers), else a new one."""
    if value and _SANE_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """First in the chain: every later log line of the request carries its id, and so does the response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = sane_request_id(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id
        # Cleared when the response is closed (request_finished), not here: Django logs a 4xx/5xx
        # ("django.request") after the middleware has returned, and that line needs the id too.
        request_id_var.set(request_id)
        account_id_var.set(None)
        started = time.monotonic()
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        if settings.LOG_REQUESTS:
            # The path only: a query string is the client's and may carry anything.
            request_log.info("%s %s %s", request.method, request.path, response.status_code,
                             extra={"method": request.method, "path": request.path, "status": response.status_code,
                                    "duration_ms": round((time.monotonic() - started) * 1000, 1)})
        return response


def _clear_request_context(**kwargs) -> None:
    request_id_var.set(None)
    account_id_var.set(None)


request_finished.connect(_clear_request_context, dispatch_uid="crm_marketing.logging.clear_request_context")


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.account_id = account_id_var.get()
        return True


# --- redaction -------------------------------------------------------------------------------
_META_TOKEN = re.compile(r"\bEAA[A-Za-z0-9_\-]{6,}")
_QUERY_SECRET = re.compile(r"((?:\b(?:access_token|appsecret_proof|client_secret)|[?&]code)=)[^&\s\"'<>]+", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"(authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\n,}]+", re.IGNORECASE)
_AUTH_SCHEME = re.compile(r"\b(Bearer|Token|Basic|OAuth)\s+[A-Za-z0-9._~+/=\-]{8,}")
_E164 = re.compile(r"\+\d{8,15}\b")
# WhatsApp writes numbers without the "+" (wa_id, from, to): masked where a key names them.
_LABELLED_PHONE = re.compile(r"(\b(?:wa_id|phone|phone_number|display_phone_number|from|to|recipient_id)[\"']?\s*[:=]\s*[\"']?)(\d{8,15})\b",
                             re.IGNORECASE)
REDACTED = "[redacted]"


def mask_phone(number: str) -> str:
    """+5491155550001 -> +54911*****001: the country and area stay readable, the subscriber does not."""
    plus = "+" if number.startswith("+") else ""
    digits = number[len(plus):]
    head = max(1, min(5, len(digits) - 7))
    return plus + digits[:head] + "*" * (len(digits) - head - 3) + digits[-3:]


def redact(text: str) -> str:
    """Mask every token, credential and phone number this project may put in a log line."""
    text = _META_TOKEN.sub("EAA" + REDACTED, text)
    text = _QUERY_SECRET.sub(r"\1" + REDACTED, text)
    text = _AUTH_HEADER.sub(r"\1" + REDACTED, text)
    text = _AUTH_SCHEME.sub(r"\1 " + REDACTED, text)
    text = _E164.sub(lambda m: mask_phone(m.group(0)), text)
    return _LABELLED_PHONE.sub(lambda m: m.group(1) + mask_phone(m.group(2)), text)


_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id", "account_id"}
_SKIPPED_EXTRAS = frozenset({"request", "server_time"})  # Django's request objects: not for a log line


class RedactSecretsFilter(logging.Filter):
    """Bakes the message with its arguments, then masks it; same for the traceback and extras."""

    _exception_formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what there is
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exception_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _RECORD_FIELDS and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, account_id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id_var.get()),
            "account_id": getattr(record, "account_id", account_id_var.get()),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in _SKIPPED_EXTRAS and key not in entry:
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else redact(str(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)
