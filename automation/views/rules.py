"""/crm/marketing/automation/rules: list, create (one, or several as the original client's
{"rules": [...]}), read, partial update, delete, and the preview of a rule's messages for a lead.

ceo and admin write; marketing reads; sellers get 403. Another account's rule or lead is a 404.
"""
from __future__ import annotations

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from automation.models import AutomationRule, RuleStep
from automation.serializers import (
    PreviewInput, PreviewMessageSerializer, RuleInput, RuleSerializer, bulk_items, service_data, validated,
)
from automation.services import rules as rule_service
from crm_marketing.api import AccountScopedViewSet
from crm_marketing.models import Lead
from crm_marketing.tenancy import MANAGER_ROLES, MARKETING_ROLES

BulkResult = inline_serializer("RulesSaved", {"updated": serializers.IntegerField(), "rules_count": serializers.IntegerField()})


class RuleViewSet(AccountScopedViewSet):
    queryset = AutomationRule.objects.prefetch_related(Prefetch("steps", queryset=RuleStep.objects.select_related("template")))
    serializer_class = RuleSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    lookup_value_regex = r"[0-9]{1,18}"
    default_ordering = ("name", "id")

    @property
    def allowed_roles(self) -> frozenset[str]:
        """Reading (the preview too: it writes nothing) is for marketing as well; every write is ceo/admin's."""
        method = getattr(getattr(self, "request", None), "method", "GET")
        reads = method in permissions.SAFE_METHODS or getattr(self, "action", None) == "preview"
        return MARKETING_ROLES if reads else MANAGER_ROLES

    def _answer(self, rules, **kwargs) -> Response:
        rules = list(rules)
        counters = rule_service.counters_by_rule([r.pk for r in rules])
        many = kwargs.pop("many", False)
        data = RuleSerializer(rules if many else rules[0], many=many, context={"counters": counters}).data
        return Response(data, **kwargs)

    def _fresh(self, rule_id: int) -> AutomationRule:
        return self.queryset.get(pk=rule_id, account=self.request.account)

    def _kwargs(self) -> dict:
        return {"actor": self.request.user, "request": self.request}

    @extend_schema(responses=RuleSerializer(many=True))
    def list(self, request, *args, **kwargs):
        return self._answer(self.get_queryset(), many=True)

    @extend_schema(request=RuleInput, responses={201: RuleSerializer, 200: BulkResult})
    def create(self, request, *args, **kwargs):
        if isinstance(request.data, dict) and "rules" in request.data:
            updated, count = rule_service.save_rules_bulk(request.account, [service_data(item) for item in bulk_items(request.data)],
                                                            **self._kwargs())
            return Response({"updated": updated, "rules_count": count})
        data = service_data(validated(RuleInput, request.data))
        rule = rule_service.save_rule(request.account, data, **self._kwargs())
        return self._answer([self._fresh(rule.pk)], status=status.HTTP_201_CREATED)

    def retrieve(self, request, *args, **kwargs):
        return self._answer([self.get_object()])

    @extend_schema(request=RuleInput)
    def partial_update(self, request, *args, **kwargs):
        rule = self.get_object()
        data = service_data(validated(RuleInput, request.data, partial=True))
        rule_service.save_rule(request.account, data, rule=rule, **self._kwargs())
        return self._answer([self._fresh(rule.pk)])

    def destroy(self, request, *args, **kwargs):
        rule_service.delete_rule(self.get_object(), **self._kwargs())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=PreviewInput, responses=PreviewMessageSerializer(many=True))
    @action(detail=True, methods=["post"])
    def preview(self, request, *args, **kwargs):
        rule = self.get_object()
        lead_id = validated(PreviewInput, request.data)["lead_id"]
        lead = get_object_or_404(Lead.objects.filter(account=request.account), pk=lead_id)
        return Response(PreviewMessageSerializer(rule_service.preview_rule(rule, lead), many=True).data)


router = SimpleRouter()
router.trailing_slash = "/?"
router.register("automation/rules", RuleViewSet, basename="automation-rule")
urlpatterns = router.urls
