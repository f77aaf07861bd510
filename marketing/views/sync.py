"""/crm/marketing endpoints: sync (queue a sync of the selected ad account now)."""
from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from crm_marketing.api import AccountScopedAPIView
from crm_marketing.tenancy import MARKETING_ROLES
from marketing.services.runs import request_sync


class SyncView(AccountScopedAPIView):
    """POST: 202 {task_id}; 409 when a sync is queued or running (or Meta parked the ad account);
    503 when Meta is not connected or no ad account is selected."""

    allowed_roles = MARKETING_ROLES
    error_statuses = (503,)

    @extend_schema(request=None, responses={202: inline_serializer("SyncQueued", {"task_id": serializers.CharField()})})
    def post(self, request):
        run = request_sync(request.account, actor=request.user, request=request)
        return Response({"task_id": run.task_id}, status=status.HTTP_202_ACCEPTED)


urlpatterns = [path("sync", SyncView.as_view(), name="sync")]
