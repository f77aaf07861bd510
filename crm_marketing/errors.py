"""Domain errors: services raise these; the API's exception handler maps them to the envelope."""
from __future__ import annotations


class DomainError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, fields: dict | None = None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.fields = fields or {}
        if status_code:
            self.status_code = status_code


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class NotConnected(DomainError):
    status_code = 503
    code = "meta_not_connected"


class UpstreamFailed(DomainError):
    """Meta answered with an error we cannot fix by asking again now."""

    status_code = 502
    code = "meta_error"


class InvalidInput(DomainError):
    """Input a service found wrong, by field: the same 400 a serializer's errors give."""

    status_code = 400
    code = "validation_error"

    def __init__(self, fields: dict[str, list[str]], message: str = "The request has invalid fields."):
        super().__init__(message, fields=fields)


class NotFound(DomainError):
    """No such object in this account: missing and another account's answer alike."""

    status_code = 404
    code = "not_found"

    def __init__(self, message: str = "Not found."):
        super().__init__(message)
