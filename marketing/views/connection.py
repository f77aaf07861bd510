"""/crm/marketing endpoints: the Meta connection (token status, portfolios, ad accounts, connect)."""
from __future__ import annotations

import re

from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from crm_marketing.api import META_ERRORS, AccountScopedAPIView, StrictSerializerMixin
from crm_marketing.tenancy import MANAGER_ROLES, MARKETING_ROLES
from marketing.services import accounts
from marketing.serializers import MetaAdAccountSerializer, PortfolioSerializer, TokenStatusSerializer

AD_ACCOUNT_ID = re.compile(r"^(?:act_)?(\d{1,30})$")


class AdAccountsQuery(serializers.Serializer):
    portfolio_id = serializers.RegexField(r"^\d{1,30}$", required=False, allow_blank=True,
                                          error_messages={"invalid": "A Business Manager id is digits only."})


class ConnectAdAccountInput(StrictSerializerMixin, serializers.Serializer):
    account_id = serializers.CharField(max_length=40)
    account_name = serializers.CharField(max_length=200, required=False, allow_blank=True)

    def validate_account_id(self, value: str) -> str:
        match = AD_ACCOUNT_ID.match(value.strip())
        if not match:
            raise serializers.ValidationError('An ad account id looks like "act_1234567890".')
        return f"act_{match.group(1)}"


class TokenStatusView(AccountScopedAPIView):
    allowed_roles = MARKETING_ROLES

    @extend_schema(responses=TokenStatusSerializer)
    def get(self, request):
        return Response(TokenStatusSerializer(accounts.token_status(request.account)).data)


class MetaPortfoliosView(AccountScopedAPIView):
    error_statuses = META_ERRORS
    allowed_roles = MARKETING_ROLES

    @extend_schema(responses=PortfolioSerializer(many=True))
    def get(self, request):
        return Response(PortfolioSerializer(accounts.list_portfolios(request.account), many=True).data)


class MetaAccountsView(AccountScopedAPIView):
    error_statuses = META_ERRORS
    allowed_roles = MARKETING_ROLES

    @extend_schema(parameters=[AdAccountsQuery], responses=MetaAdAccountSerializer(many=True))
    def get(self, request):
        query = AdAccountsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = accounts.list_ad_accounts(request.account, portfolio_id=query.validated_data.get("portfolio_id") or None)
        return Response(MetaAdAccountSerializer(found, many=True).data)


class ConnectAdAccountView(AccountScopedAPIView):
    error_statuses = META_ERRORS
    allowed_roles = MANAGER_ROLES

    @extend_schema(request=ConnectAdAccountInput, responses=inline_serializer("AdAccountConnected", {
        "connected": serializers.BooleanField(), "account_id": serializers.CharField(),
        "account_name": serializers.CharField(), "message": serializers.CharField()}))
    def post(self, request):
        body = ConnectAdAccountInput(data=request.data)
        body.is_valid(raise_exception=True)
        ad_account = accounts.connect_ad_account(
            request.account, meta_ad_account_id=body.validated_data["account_id"],
            account_name=body.validated_data.get("account_name", ""), actor=request.user, request=request)
        return Response({
            "connected": True,
            "account_id": ad_account.meta_ad_account_id,
            "account_name": ad_account.name,
            "message": f"The hub now reports on {ad_account.name} ({ad_account.meta_ad_account_id}); its first sync has started.",
        })


urlpatterns = [
    path("token-status", TokenStatusView.as_view(), name="token-status"),
    path("meta-portfolios", MetaPortfoliosView.as_view(), name="meta-portfolios"),
    path("meta-accounts", MetaAccountsView.as_view(), name="meta-accounts"),
    path("connect", ConnectAdAccountView.as_view(), name="connect"),
]
