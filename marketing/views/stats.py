"""/crm/marketing endpoints: ROI stats, campaigns and their insights (reads only).

Roles ceo, admin and marketing; sellers get 403. Every figure is request.account's.
"""
from __future__ import annotations

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from crm_marketing.api import AccountScopedAPIView, EnvelopePagination
from crm_marketing.tenancy import MARKETING_ROLES
from marketing import stats, time_ranges
from crm_marketing.openapi import ordering_parameter, page_parameters
from marketing.serializers import (
    CampaignDetailSerializer, CampaignInsightsSerializer, CampaignListParams, CampaignPageSerializer, CampaignStatSerializer,
    MarketingStatsSerializer,
    RoiReportSerializer, TimeseriesParams, TimeseriesPointSerializer,
)


# The window every stats-like endpoint reads (automation's stats too): one definition for the schema.
TIME_RANGE_PARAMETERS = [
    OpenApiParameter("time_range", OpenApiTypes.STR, enum=time_ranges.ALLOWED, description=f"default {time_ranges.DEFAULT}"),
    OpenApiParameter("since", OpenApiTypes.DATE, description="with until, instead of time_range (inclusive, account timezone)"),
    OpenApiParameter("until", OpenApiTypes.DATE),
]


class _StatsView(AccountScopedAPIView):
    allowed_roles = MARKETING_ROLES

    def window(self, request):
        return stats.window_for(request.account, request.query_params)


class MarketingStatsView(_StatsView):
    @extend_schema(operation_id="marketing_stats", parameters=TIME_RANGE_PARAMETERS, responses=MarketingStatsSerializer)
    def get(self, request):
        payload = stats.marketing_stats(request.account, self.window(request))
        return Response(MarketingStatsSerializer(payload).data)


class RoiView(_StatsView):
    @extend_schema(operation_id="marketing_stats_roi", parameters=TIME_RANGE_PARAMETERS, responses=RoiReportSerializer)
    def get(self, request):
        payload = stats.roi_report(request.account, self.window(request))
        return Response(RoiReportSerializer(payload).data)


class TimeseriesView(_StatsView):
    error_statuses = (404,)  # an unknown campaign_id
    @extend_schema(operation_id="marketing_stats_timeseries", parameters=[*TIME_RANGE_PARAMETERS, TimeseriesParams],
                   responses=TimeseriesPointSerializer(many=True))
    def get(self, request):
        params = TimeseriesParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        window = self.window(request)
        campaign_id = params.validated_data.get("campaign_id")
        campaign = stats.campaign_for(request.account, campaign_id) if campaign_id else None
        points = stats.timeseries(request.account, window, campaign)
        return Response(TimeseriesPointSerializer(points, many=True).data)


class _Rows(list):
    """A list EnvelopePagination can count like a queryset."""

    def count(self, *args):
        return super().count(*args) if args else len(self)


class CampaignListView(_StatsView):
    """A page of CampaignStats over the window (default 30d), filtered by status, ordered."""

    @extend_schema(operation_id="marketing_campaigns_list", parameters=[
        *TIME_RANGE_PARAMETERS, CampaignListParams, ordering_parameter(stats.CAMPAIGN_ORDERING), *page_parameters(),
    ], responses=CampaignPageSerializer)
    def get(self, request):
        params = CampaignListParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        rows, converter = stats.campaign_list(
            request.account, self.window(request), status=params.validated_data.get("status"), ordering=params.order_terms,
        )
        paginator = EnvelopePagination()
        page = paginator.paginate_queryset(_Rows(rows), request, view=self)
        response = paginator.get_paginated_response(CampaignStatSerializer(page, many=True).data)
        response.data.update({"currency_mismatch": bool(converter.missing), "unconverted_currencies": sorted(converter.missing)})
        return response


class CampaignDetailView(_StatsView):
    @extend_schema(operation_id="marketing_campaign_retrieve", parameters=TIME_RANGE_PARAMETERS, responses=CampaignDetailSerializer)
    def get(self, request, campaign_id: str):
        campaign = stats.campaign_for(request.account, campaign_id)
        return Response(CampaignDetailSerializer(stats.campaign_detail(campaign, self.window(request))).data)


class CampaignInsightsView(_StatsView):
    @extend_schema(operation_id="marketing_campaign_insights", parameters=TIME_RANGE_PARAMETERS, responses=CampaignInsightsSerializer)
    def get(self, request, campaign_id: str):
        campaign = stats.campaign_for(request.account, campaign_id)
        return Response(CampaignInsightsSerializer(stats.campaign_insights(campaign, self.window(request))).data)


urlpatterns = [
    path("stats", MarketingStatsView.as_view(), name="stats"),
    path("stats/roi", RoiView.as_view(), name="stats-roi"),
    path("stats/timeseries", TimeseriesView.as_view(), name="stats-timeseries"),
    path("campaigns", CampaignListView.as_view(), name="campaigns"),
    path("campaigns/<str:campaign_id>", CampaignDetailView.as_view(), name="campaign-detail"),
    path("campaigns/<str:campaign_id>/insights", CampaignInsightsView.as_view(), name="campaign-insights"),
]
