"""/crm/marketing endpoints: the account's Meta assets (WhatsApp channels, Facebook Pages).

GET lists what the token sees merged with our rows (ceo, admin, marketing); POST chooses one and
subscribes our app to its webhooks (ceo, admin). 503 when Meta is not connected, 502 when it fails.
"""
from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from crm_marketing.api import META_ERRORS, AccountScopedAPIView, StrictSerializerMixin
from crm_marketing.tenancy import MANAGER_ROLES, MARKETING_ROLES
from marketing.services import assets

META_ID = r"^\d{1,30}$"


class WhatsAppChannelSerializer(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True, help_text="Our row's id; null while the number is not stored")
    waba_id = serializers.CharField()
    phone_number_id = serializers.CharField()
    display_phone_number = serializers.CharField()
    verified_name = serializers.CharField()
    quality_rating = serializers.CharField()
    messaging_limit_tier = serializers.CharField()
    throughput_mps = serializers.IntegerField()
    is_selected = serializers.BooleanField()


class MetaPageSerializer(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True, help_text="Our row's id; null while the page is not stored")
    page_id = serializers.CharField()
    name = serializers.CharField()
    is_subscribed = serializers.BooleanField()


class SelectChannelInput(StrictSerializerMixin, serializers.Serializer):
    phone_number_id = serializers.RegexField(META_ID, error_messages={"invalid": "A phone number id is digits only."})


class SubscribePageInput(StrictSerializerMixin, serializers.Serializer):
    page_id = serializers.RegexField(META_ID, error_messages={"invalid": "A page id is digits only."})


class _AssetsView(AccountScopedAPIView):
    error_statuses = META_ERRORS
    @property
    def allowed_roles(self):
        return MANAGER_ROLES if self.request.method == "POST" else MARKETING_ROLES


class WhatsAppChannelsView(_AssetsView):
    """GET: every phone number of every WABA the token sees (``id`` null until stored), then stored
    numbers Meta no longer lists. POST {phone_number_id}: select it, subscribe the app to its WABA, and
    answer the list as GET would (DESIGN.md section 5; the hub's wizard replaces its list with it)."""

    serializer_class = WhatsAppChannelSerializer

    @extend_schema(responses=WhatsAppChannelSerializer(many=True))
    def get(self, request):
        return Response(WhatsAppChannelSerializer(assets.list_whatsapp_channels(request.account), many=True).data)

    @extend_schema(request=SelectChannelInput, responses=WhatsAppChannelSerializer(many=True))
    def post(self, request):
        body = SelectChannelInput(data=request.data)
        body.is_valid(raise_exception=True)
        _, listed = assets.select_whatsapp_channel(request.account, body.validated_data["phone_number_id"],
                                                   actor=request.user, request=request)
        return Response(WhatsAppChannelSerializer(listed, many=True).data)


class MetaPagesView(_AssetsView):
    """GET: the pages the token manages (``id`` null until stored), then stored pages Meta no longer
    lists. POST {page_id}: store it with its page token (encrypted), subscribe its leadgen webhooks, and
    answer the list as GET would."""

    serializer_class = MetaPageSerializer

    @extend_schema(responses=MetaPageSerializer(many=True))
    def get(self, request):
        return Response(MetaPageSerializer(assets.list_meta_pages(request.account), many=True).data)

    @extend_schema(request=SubscribePageInput, responses=MetaPageSerializer(many=True))
    def post(self, request):
        body = SubscribePageInput(data=request.data)
        body.is_valid(raise_exception=True)
        _, listed = assets.subscribe_page(request.account, body.validated_data["page_id"], actor=request.user, request=request)
        return Response(MetaPageSerializer(listed, many=True).data)


urlpatterns = [
    path("whatsapp-channels", WhatsAppChannelsView.as_view(), name="whatsapp-channels"),
    path("meta-pages", MetaPagesView.as_view(), name="meta-pages"),
]
