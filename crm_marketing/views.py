"""CRM API: /crm/leads, /crm/opportunities, /crm/sales. Thin: validate, call a service, serialize."""
from __future__ import annotations

from crm_marketing import services
from crm_marketing.api import AccountScopedViewSet
from crm_marketing.models import Lead, Opportunity, Sale
from crm_marketing.serializers import (
    LeadFilter, LeadSerializer, OpportunityFilter, OpportunitySerializer, SaleFilter, SaleSerializer, seller_scope,
)


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
