"""Shapes of the connection endpoints. No serializer here has a token field, by design."""
from __future__ import annotations

from rest_framework import serializers


class AuthUrlSerializer(serializers.Serializer):
    auth_url = serializers.URLField()
    state = serializers.CharField()
    expires_in = serializers.IntegerField()


class SelectedAdAccountSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    currency = serializers.CharField()


class TokenStatusSerializer(serializers.Serializer):
    connected = serializers.BooleanField()
    needs_reconnect = serializers.BooleanField()
    expires_at = serializers.DateTimeField(allow_null=True)
    days_left = serializers.IntegerField(allow_null=True)
    scopes = serializers.ListField(child=serializers.CharField())
    business_managers = serializers.IntegerField(allow_null=True)
    ad_accounts = serializers.IntegerField(allow_null=True)
    ad_account = SelectedAdAccountSerializer(allow_null=True)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if instance.connect_url:
            data["connect_url"] = instance.connect_url
        return data


class PortfolioSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    ad_accounts_count = serializers.IntegerField()


class MetaAdAccountSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    currency = serializers.CharField()
    timezone = serializers.CharField()
    status = serializers.CharField()
