"""DRF authentication: ``Authorization: Token <key>`` for scripts, the session cookie for the hub.

Its own module because DRF imports authentication classes while it loads its views.
"""
from __future__ import annotations

from functools import lru_cache

from django.contrib.auth import get_user_model
from django.db import connection
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
        user = next(iter(get_user_model().objects.raw(_user_by_token_sql(self.get_model()), [key])), None)
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        token = self.get_model().from_db(user._state.db, ["key", "user_id"], [key, user.pk])
        token.user = user
        return user, token


@lru_cache(maxsize=None)
def _user_by_token_sql(token_model) -> str:
    """The token's user in one prepared statement: the same row DRF's ``select_related("user").get(key=...)``
    reads, without compiling that query on every API call (a third of a cached stats read's CPU went to
    compiling its two auth queries)."""
    q, user_model = connection.ops.quote_name, get_user_model()
    token_user = q(token_model._meta.get_field("user").column)
    return (f"SELECT u.* FROM {q(token_model._meta.db_table)} t JOIN {q(user_model._meta.db_table)} u "
            f"ON u.{q(user_model._meta.pk.column)} = t.{token_user} WHERE t.{q(token_model._meta.pk.column)} = %s")


class SessionAuthentication(authentication.SessionAuthentication):
    """DRF's session authentication (CSRF enforced on unsafe methods), refusing with ``csrf_failed``."""

    def enforce_csrf(self, request):
        try:
            super().enforce_csrf(request)
        except exceptions.PermissionDenied as refused:
            raise CsrfFailed(refused.detail) from None
