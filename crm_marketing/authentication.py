"""DRF authentication for scripts: ``Authorization: Token <key>``.

Its own module because DRF imports authentication classes while it loads its views.
"""
from __future__ import annotations

from rest_framework import authentication, exceptions

from crm_marketing.envelope import UNSTORABLE_TEXT


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication; a key no token can have (too long, a NUL) is refused before
    it reaches the database, where PostgreSQL would fail on the NUL instead of finding nothing."""

    def authenticate_credentials(self, key):
        if len(key) > 40 or UNSTORABLE_TEXT.search(key):
            raise exceptions.AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(key)
