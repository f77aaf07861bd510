"""/crm/marketing/hsm/templates: the account's WhatsApp templates, and "sync them now"."""
from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from automation.models import MessageTemplate
from automation.serializers import TemplateQuery, TemplateSerializer
from automation.services.counters import counters_by
from automation.services.templates import request_template_sync
from crm_marketing.api import AccountScopedAPIView
from crm_marketing.tenancy import MANAGER_ROLES, MARKETING_ROLES


class TemplateListView(AccountScopedAPIView):
    """GET: a plain list (a small catalogue), ``?status=APPROVED`` or ``?status=PAUSED,REJECTED``."""

    allowed_roles = MARKETING_ROLES
    serializer_class = TemplateSerializer

    @extend_schema(parameters=[TemplateQuery], responses=TemplateSerializer(many=True))
    def get(self, request):
        query = TemplateQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        templates = MessageTemplate.objects.filter(account=request.account).order_by("name", "language", "id")
        statuses = query.validated_data.get("status")
        if statuses:
            templates = templates.filter(status__in=statuses)
        templates = list(templates)
        counters = counters_by("template_id", [t.pk for t in templates])
        return Response(TemplateSerializer(templates, many=True, context={"counters": counters}).data)


class TemplateSyncView(AccountScopedAPIView):
    """POST: 202 {task_id}. ceo and admin only: a sync re-flags automation rules, which are theirs, and
    spends the WABA's Graph quota; 503 without a usable Meta connection or a selected WhatsApp channel."""

    allowed_roles = MANAGER_ROLES
    error_statuses = (503,)

    @extend_schema(request=None, responses={202: inline_serializer("TemplateSyncQueued", {"task_id": serializers.CharField()})})
    def post(self, request):
        task_id = request_template_sync(request.account, actor=request.user, request=request)
        return Response({"task_id": task_id}, status=status.HTTP_202_ACCEPTED)


urlpatterns = [
    path("hsm/templates", TemplateListView.as_view(), name="hsm-templates"),
    path("hsm/templates/sync", TemplateSyncView.as_view(), name="hsm-templates-sync"),
]
