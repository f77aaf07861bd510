"""The OpenAPI schema as the API really answers: every payload inside the envelope, the error
envelope on every status the error handler can give, list filters and ``ordering`` as query
parameters.

Structural on purpose: ``EnvelopeAutoSchema`` (the DEFAULT_SCHEMA_CLASS) knows the renderer, the
exception handler and the scoped bases, so a new view is documented truthfully without
annotations; ``@extend_schema`` is only for a payload the serializer cannot tell.
"""
from __future__ import annotations

import re
from typing import Iterable

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import build_basic_type, build_parameter_type
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter

ERROR_COMPONENT = "ErrorEnvelope"


class CsrfSessionScheme(SessionScheme):
    """The session cookie (our SessionAuthentication only renames its CSRF refusal) in the schema."""

    target_class = "crm_marketing.authentication.SessionAuthentication"

# Why each error status can happen, for the operations it can happen on.
ERROR_DESCRIPTIONS = {
    "400": "Invalid input: the fields that are wrong are listed in error.fields.",
    "401": "Not signed in, or the token is not valid.",
    "403": "Not a member of the account (X-Account), the role cannot use this endpoint, or a session write "
           "without its CSRF token (code csrf_failed).",
    "404": "No such object in this account (another account's object is 404 too).",
    "409": "The change conflicts with existing data or with work in progress.",
    "413": "The request body is too large.",
    "429": "Too many requests: retry after Retry-After seconds.",
    "502": "Meta answered with an error.",
    "503": "Meta is not connected, or no ad account or channel is selected.",
}
ALWAYS = ("400", "401", "403", "429")
BODY_METHODS = {"POST", "PUT", "PATCH"}
WRITE_METHODS = BODY_METHODS | {"DELETE"}

X_ACCOUNT = OpenApiParameter(
    "X-Account", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="Slug of the account to act for; needed only by users who belong to several.",
)

# The API's own bases and the frameworks' classes: their docstrings describe the base, not the view.
_GENERIC_DOC_MODULES = ("crm_marketing.api", "rest_framework.", "django.")


def error_envelope_schema() -> dict:
    return {
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
                    "fields": {
                        "type": "object",
                        "additionalProperties": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    }


def success_envelope_schema(payload: dict) -> dict:
    return {
        "type": "object",
        "required": ["success", "data", "timestamp"],
        "properties": {
            "success": {"type": "boolean", "enum": [True]},
            "data": payload,
            "timestamp": {"type": "string", "format": "date-time"},
        },
    }


def ordering_parameter(fields: Iterable[str]) -> OpenApiParameter:
    """``ordering=a,-b``: comma-separated terms among ``fields``, ``-`` for descending."""
    names = sorted(fields)
    term = "-?(?:" + "|".join(re.escape(n) for n in names) + ")"
    return OpenApiParameter(
        "ordering", OpenApiTypes.STR, OpenApiParameter.QUERY, required=False,
        pattern=f"^ *{term} *(?:, *{term} *)*$",
        description=f"Comma-separated, among: {', '.join(names)}; prefix - for descending.",
    )


class EnvelopeAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema with the project's envelope, errors, filters and ordering."""

    def get_description(self) -> str:
        action_or_method = getattr(self.view, getattr(self.view, "action", None) or self.method.lower(), None)
        own = (getattr(action_or_method, "__doc__", None) or "").strip()
        if own:
            return super().get_description()
        for cls in type(self.view).__mro__:
            if cls.__dict__.get("__doc__"):
                return "" if cls.__module__.startswith(_GENERIC_DOC_MODULES) else super().get_description()
        return ""

    def get_override_parameters(self):
        parameters = [*super().get_override_parameters()]
        if self.path.startswith("/crm/"):
            parameters.insert(0, X_ACCOUNT)
        return parameters

    def _get_paginator(self):
        """Only the scoped viewset's own list pages: a viewset that overrides ``list`` (a small
        catalogue answered as a plain list) is documented by what it returns, not as a page."""
        from crm_marketing.api import AccountScopedViewSet

        if isinstance(self.view, AccountScopedViewSet) and type(self.view).list is not AccountScopedViewSet.list:
            return None
        return super()._get_paginator()

    def _get_filter_parameters(self):
        parameters = super()._get_filter_parameters()
        filters = getattr(self.view, "filter_serializer_class", None)
        if not self._is_list_view() or getattr(self.view, "action", None) != "list":
            return parameters
        if filters is not None:
            mapped = self._map_serializer(filters(), "request")
            for name, schema in mapped["properties"].items():
                parameters.append(build_parameter_type(
                    name=name, schema=schema, location=OpenApiParameter.QUERY,
                    description=schema.pop("description", None), required=False,
                ))
        ordering_fields = getattr(self.view, "ordering_fields", ())
        if ordering_fields:
            ordering = ordering_parameter(ordering_fields)
            parameters.append(build_parameter_type(
                name=ordering.name, schema=build_basic_type(OpenApiTypes.STR), location=ordering.location,
                pattern=ordering.pattern, description=ordering.description,
            ))
        return parameters

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, response in responses.items():
            if not str(code).startswith("2"):
                continue
            for media in (response.get("content") or {}).values():
                if "schema" in media:
                    media["schema"] = success_envelope_schema(media["schema"])
        if self.path.startswith("/crm/"):
            for code in self.error_statuses():
                responses.setdefault(code, self._error_response(code))
        return responses

    def error_statuses(self) -> list[str]:
        """The statuses the exception handler can answer for this operation."""
        codes = set(ALWAYS)
        if "{" in self.path:
            codes.add("404")
        if self.method in WRITE_METHODS:
            codes.add("409")  # IntegrityError and Conflict map to 409 on any write
        if self.method in BODY_METHODS:
            codes.add("413")
        codes.update(str(c) for c in getattr(self.view, "error_statuses", ()))
        return sorted(codes)

    def _error_response(self, code: str) -> dict:
        response = {
            "description": ERROR_DESCRIPTIONS.get(code, ""),
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}}},
        }
        if code in ("429", "503"):
            response["headers"] = {"Retry-After": {
                "schema": {"type": "integer"}, "required": code == "429",
                "description": "Seconds to wait before trying again.",
            }}
        return response



def page_parameters() -> list[OpenApiParameter]:
    """limit and offset of a view that pages with EnvelopePagination itself (not a viewset's list)."""
    from crm_marketing.api import EnvelopePagination

    return [OpenApiParameter(p["name"], p["schema"], required=False, description=p["description"])
            for p in EnvelopePagination().get_schema_operation_parameters(view=None)]


def add_error_envelope(result: dict, generator, request, public) -> dict:
    """Postprocessing hook, after drf-spectacular's enum hook: the error envelope's component, added
    as written (the enum hook would turn its ``success: false`` into a ``SuccessEnum`` component)."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = error_envelope_schema()
    return result
