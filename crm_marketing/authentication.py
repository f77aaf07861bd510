"""DRF authentication: ``Authorization: Token <key>`` for scripts, the session cookie for the hub.

Its own module because DRF imports authentication classes while it loads its views.
"""
from __future__ import annotations

from rest_framework import authentication, exceptions

from crm_marketing.validation import UNSTORABLE_TEXT


class CsrfFailed(exceptions.PermissionDenied):
    """A session write without a valid CSRF token: its own code, so the hub knows to reload the page."""

    default_code = "csrf_failed"


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication; a key no token can have (too long, a NUL) is refused before
    it reaches the database, where PostgreSQL would fail on the NUL instead of finding nothing."""

    def authenticate_credentials(self, key):
        if len(key) > 40 or UNSTORABLE_TEXT.search(key):
            raise exceptions.AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(key)


class SessionAuthentication(authentication.SessionAuthentication):
    """DRF's session authentication (CSRF enforced on unsafe methods), refusing with ``csrf_failed``."""

    def enforce_csrf(self, request):
        try:
            super().enforce_csrf(request)
        except exceptions.PermissionDenied as refused:
            raise CsrfFailed(refused.detail) from None
