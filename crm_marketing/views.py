"""CRM API: /crm/me, /crm/leads, /crm/opportunities, /crm/sales. Thin: validate, call a service, serialize."""
from __future__ import annotations

from django.conf import settings
from django.utils.translation.trans_real import parse_accept_lang_header
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from crm_marketing import services
from crm_marketing.api import AccountScopedViewSet, UserScopedAPIView
from crm_marketing.models import Lead, Opportunity, Sale
from crm_marketing.serializers import (
    LeadFilter, LeadSerializer, MeSerializer, OpportunityFilter, OpportunitySerializer, SaleFilter, SaleSerializer,
    seller_scope,
)
from crm_marketing.tenancy import choose_membership, memberships_of

HUB_LANGUAGES = ("es", "en")  # the first is the default


def hub_language(request) -> str:
    """The language cookie (Django's set_language), else the best of Accept-Language that the hub
    speaks, else Spanish (the hub's default; LANGUAGE_CODE stays English for the admin)."""
    wanted = [request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME, "")]
    wanted += [code for code, _ in parse_accept_lang_header(request.META.get("HTTP_ACCEPT_LANGUAGE", ""))]
    for code in wanted:
        base = code.lower().split("-")[0]
        if base in HUB_LANGUAGES:
            return base
    return HUB_LANGUAGES[0]


class MeView(UserScopedAPIView):
    """GET /crm/me: who the caller is, the accounts they belong to, and the one ``X-Account`` picks
    (a 403 when it names an account they are not in, as on every other call)."""

    http_method_names = ["get", "head", "options"]
    serializer_class = MeSerializer

    @extend_schema(responses=MeSerializer)
    def get(self, request):
        memberships = memberships_of(request.user)
        chosen = choose_membership(memberships, request.META.get("HTTP_X_ACCOUNT"))
        me = {"user": request.user, "memberships": memberships, "account": chosen, "language": hub_language(request)}
        return Response(MeSerializer(me).data)


class _CrmViewSet(AccountScopedViewSet):
    """list, create, retrieve, partial update; no PUT (partial updates only) and no delete."""

    http_method_names = ["get", "post", "patch", "head", "options"]

    def narrow_queryset(self, queryset):
        return seller_scope(queryset, self.request.membership)

    def service_kwargs(self) -> dict:
        return {"actor": self.request.user, "request": self.request}


class LeadViewSet(_CrmViewSet):
    queryset = Lead.objects.select_related("seller")
    serializer_class = LeadSerializer
    filter_serializer_class = LeadFilter
    ordering_fields = ("created_at", "updated_at", "first_name", "last_name", "status")
    default_ordering = ("-created_at",)

    def narrow_queryset(self, queryset):
        return seller_scope(queryset, self.request.membership, lead_path="")

    def create_row(self, account, data):
        if self.request.membership.role == "seller" and data.get("seller") is None:
            data["seller"] = self.request.user  # a seller's new lead is his, or he could not see it
        return services.create_lead(account, **data, **self.service_kwargs())

    def update_row(self, instance, data):
        return services.update_lead(instance, **data, **self.service_kwargs())


class OpportunityViewSet(_CrmViewSet):
    queryset = Opportunity.objects.select_related("lead")
    serializer_class = OpportunitySerializer
    filter_serializer_class = OpportunityFilter
    ordering_fields = ("created_at", "closed_at", "amount", "stage")
    default_ordering = ("-created_at",)

    def create_row(self, account, data):
        return services.create_opportunity(account, **data, **self.service_kwargs())

    def update_row(self, instance, data):
        data.pop("lead", None)
        return services.update_opportunity(instance, **data, **self.service_kwargs())


class SaleViewSet(_CrmViewSet):
    queryset = Sale.objects.select_related("lead")
    serializer_class = SaleSerializer
    filter_serializer_class = SaleFilter
    ordering_fields = ("closed_at", "amount", "created_at")
    default_ordering = ("-closed_at",)

    def create_row(self, account, data):
        return services.create_sale(account, **data, **self.service_kwargs())

    def update_row(self, instance, data):
        return services.update_sale(instance, **data, **self.service_kwargs())
