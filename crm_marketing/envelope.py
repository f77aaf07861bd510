"""The response envelope and the one error shape, from one exception handler.

Kept apart from api.py because DRF imports the renderer and the handler while it loads its views.
"""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import IntegrityError
from django.http import Http404, HttpResponse
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions, parsers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from crm_marketing.authentication import CsrfFailed
from crm_marketing.errors import DomainError
from crm_marketing.ratelimits import RateLimited
from crm_marketing.validation import MAX_JSON_DEPTH, UNSTORABLE_TEXT, json_problem


def utc_timestamp() -> str:
    return datetime.now(dt_timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"success": False, "error": {"code": code, "message": message, "fields": fields or {}}}


class EnvelopeRenderer(JSONRenderer):
    """Wraps successful payloads in {"success": true, "data": ..., "timestamp": ...}."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        if response is not None and response.status_code < 400 and data is not None:
            data = {"success": True, "data": data, "timestamp": utc_timestamp()}
        return super().render(data, accepted_media_type, renderer_context)


def render_data(data) -> bytes:
    """``data`` as EnvelopeRenderer writes it inside the envelope (DRF's compact JSON), to be kept and sent
    again with ``enveloped``."""
    return JSONRenderer().render(data)


def enveloped(rendered_data: bytes) -> HttpResponse:
    """A 200 whose body is byte for byte what EnvelopeRenderer writes around that data, with a fresh timestamp."""
    return HttpResponse(b'{"success":true,"data":' + rendered_data + b',"timestamp":"' + utc_timestamp().encode() + b'"}',
                        content_type="application/json")


# Valid JSON that no database column can hold is defined once, in crm_marketing.validation.
__all__ = ["MAX_JSON_DEPTH", "UNSTORABLE_TEXT", "json_problem"]


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser that also refuses, as a 400, the JSON that would otherwise end in a 500
    further in: nesting that exhausts the stack and text no database column can hold."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None
        problem = json_problem(data)
        if problem:
            raise exceptions.ParseError(f"JSON parse error - {problem}.")
        return data


_DRF_CODES = {
    CsrfFailed: "csrf_failed",  # before PermissionDenied, its base
    exceptions.ParseError: "malformed_request",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


def _flatten_fields(detail) -> dict:
    if isinstance(detail, dict):
        return {str(key): [str(m) for m in (value if isinstance(value, list) else [value])] if not isinstance(value, dict) else [str(value)] for key, value in detail.items()}
    if isinstance(detail, list):
        return {"non_field_errors": [str(m) for m in detail]}
    return {"non_field_errors": [str(detail)]}


def exception_handler(exc, context):
    """Map every error to the one envelope shape; bad input never becomes a 500."""
    headers = {}
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied) and not isinstance(exc, Ratelimited):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, Ratelimited):
        exc = RateLimited(60)
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
        return Response(error_body(exc.code, exc.message), status=429, headers=headers)
    if isinstance(exc, DomainError):
        if getattr(exc, "retry_after", None):  # e.g. Meta throttling: tell the client when to retry
            headers["Retry-After"] = str(max(1, int(exc.retry_after)))
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status_code, headers=headers)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body("request_too_large", "The request body is too large."), status=413)
    if isinstance(exc, SuspiciousOperation):
        return Response(error_body("malformed_request", "The request is malformed."), status=400)
    if isinstance(exc, IntegrityError):
        return Response(error_body("conflict", "The change conflicts with existing data."), status=409)
    if isinstance(exc, exceptions.ValidationError):
        return Response(error_body("validation_error", "The request has invalid fields.", _flatten_fields(exc.detail)), status=400)
    if isinstance(exc, exceptions.APIException):
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), exc.default_code)
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None) is not None:
            headers["Retry-After"] = str(int(exc.wait))
        return Response(error_body(code, str(exc.detail)), status=exc.status_code, headers=headers)
    return None
