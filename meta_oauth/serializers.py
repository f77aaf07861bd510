"""Shape of GET /crm/auth/meta/url. No serializer here has a token field, by design."""
from __future__ import annotations

from rest_framework import serializers


class AuthUrlSerializer(serializers.Serializer):
    auth_url = serializers.URLField()
    state = serializers.CharField()
    expires_in = serializers.IntegerField()
