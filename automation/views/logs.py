"""GET /crm/marketing/automation-logs and GET /crm/marketing/automation/stats (ceo, admin, marketing)."""
from __future__ import annotations

from dataclasses import asdict

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from automation.engine.stats import automation_stats
from automation.models import MessageSend, TriggerType
from crm_marketing.api import MAX_DB_INTEGER, AccountScopedAPIView, AccountScopedViewSet, QueryFilter
from crm_marketing.tenancy import MARKETING_ROLES
from marketing.stats import window_for
from marketing.views.stats import TIME_RANGE_PARAMETERS


class SendLogSerializer(serializers.ModelSerializer):
    lead_id = serializers.IntegerField(read_only=True)
    lead_name = serializers.SerializerMethodField()
    rule_id = serializers.IntegerField(read_only=True, allow_null=True)
    rule_name = serializers.CharField(read_only=True)

    class Meta:
        model = MessageSend
        fields = ["id", "lead_id", "lead_name", "rule_id", "rule_name", "trigger_type", "template_name", "status",
                  "skip_reason", "error_code", "error_details", "created_at", "sent_at", "delivered_at", "read_at"]
        read_only_fields = fields

    def get_lead_name(self, send: MessageSend) -> str:
        return send.lead.name


class SendLogFilter(QueryFilter):
    LOOKUPS = {"rule": "rule_id", "lead": "lead_id"}

    status = serializers.ChoiceField(choices=MessageSend.Status.choices, required=False)
    trigger_type = serializers.ChoiceField(choices=TriggerType.choices, required=False)
    rule = serializers.IntegerField(min_value=1, max_value=MAX_DB_INTEGER, required=False)
    lead = serializers.IntegerField(min_value=1, max_value=MAX_DB_INTEGER, required=False)


class AutomationLogViewSet(AccountScopedViewSet):
    allowed_roles = MARKETING_ROLES
    queryset = MessageSend.objects.select_related("lead")
    serializer_class = SendLogSerializer
    filter_serializer_class = SendLogFilter
    default_ordering = ("-created_at", "-id")


class AutomationStatsSerializer(serializers.Serializer):
    sends = serializers.IntegerField()
    delivered = serializers.IntegerField()
    read = serializers.IntegerField()
    failed = serializers.IntegerField()
    delivery_rate = serializers.FloatField(allow_null=True)
    read_rate = serializers.FloatField(allow_null=True)
    leads_followed_up = serializers.FloatField(allow_null=True)
    leads_uncontacted_24h = serializers.IntegerField()
    engine = serializers.ChoiceField(choices=["operational", "idle", "error"])


class AutomationStatsView(AccountScopedAPIView):
    allowed_roles = MARKETING_ROLES
    serializer_class = AutomationStatsSerializer

    @extend_schema(operation_id="automation_stats", parameters=TIME_RANGE_PARAMETERS, responses=AutomationStatsSerializer)
    def get(self, request):
        figures = automation_stats(request.account, window_for(request.account, request.query_params))
        return Response(AutomationStatsSerializer(asdict(figures)).data)


urlpatterns = [
    path("automation-logs", AutomationLogViewSet.as_view({"get": "list"}), name="automation-logs"),
    path("automation/stats", AutomationStatsView.as_view(), name="automation-stats"),
]
