"""/crm/marketing endpoints: ROI stats, campaigns and their insights (reads only).

Roles ceo, admin and marketing; sellers get 403. Every figure is request.account's.

The four hub reads answer their rendered JSON from the stats cache (marketing/services/stats_cache.py)
while the account's rollup version and everything else the payload shows are unchanged: each view reads
those inputs first (exchange rates, today, the campaigns' names and statuses, the Meta connection), keys
the answer on them and on the account's rollup marks not folded yet (a write since changes the key),
and computes it from those very inputs on a miss. A hit skips the figures, the
serializer and the JSON encoding (~100 KB for 500 campaigns).
"""
from __future__ import annotations

from typing import Any, Callable

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from crm_marketing.api import AccountScopedAPIView, EnvelopePagination
from crm_marketing.envelope import enveloped, render_data
from crm_marketing.tenancy import MARKETING_ROLES
from marketing import stats, time_ranges
from marketing.services import stats_cache
from marketing.stats.pending import marks_fingerprint, one_snapshot
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

    def answer(self, request, read: tuple, data: Callable[[], Any]):
        """``data()`` (a serializer's data) as the envelope, its JSON cached under ``read`` (every input of the
        payload besides the rollup) for the account's rollup version. A client asking for indented JSON
        (``Accept: application/json; indent=2``) gets it rendered as usual."""
        if "indent" in (request.accepted_media_type or ""):
            return Response(data())
        account_id = request.account.pk
        with one_snapshot():  # the token, the marks and the figures of one moment (PostgreSQL)
            read = ("response", *read, marks_fingerprint(account_id))
            return enveloped(stats_cache.cached(account_id, read, lambda: render_data(data())))


class MarketingStatsView(_StatsView):
    @extend_schema(operation_id="marketing_stats", parameters=TIME_RANGE_PARAMETERS, responses=MarketingStatsSerializer)
    def get(self, request):
        account, window = request.account, self.window(request)
        converter, state = stats.Converter.for_account(account), stats.meta_state(account)
        return self.answer(request, ("stats", *stats.read_inputs(account, window, converter), state), lambda: MarketingStatsSerializer(
            stats.marketing_stats(account, window, converter=converter, state=state)).data)


class RoiView(_StatsView):
    @extend_schema(operation_id="marketing_stats_roi", parameters=TIME_RANGE_PARAMETERS, responses=RoiReportSerializer)
    def get(self, request):
        account, window = request.account, self.window(request)
        converter, campaigns = stats.Converter.for_account(account), stats.campaign_rows(account)
        return self.answer(request, ("roi", *stats.read_inputs(account, window, converter), tuple(campaigns)), lambda: RoiReportSerializer(
            stats.roi_report(account, window, converter=converter, campaigns=campaigns)).data)


class TimeseriesView(_StatsView):
    error_statuses = (404,)  # an unknown campaign_id
    @extend_schema(operation_id="marketing_stats_timeseries", parameters=[*TIME_RANGE_PARAMETERS, TimeseriesParams],
                   responses=TimeseriesPointSerializer(many=True))
    def get(self, request):
        params = TimeseriesParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        account, window = request.account, self.window(request)
        campaign_id = params.validated_data.get("campaign_id")
        campaign = stats.campaign_for(account, campaign_id) if campaign_id else None
        converter = stats.Converter.for_account(account)
        read = ("timeseries", *stats.read_inputs(account, window, converter), campaign.meta_campaign_id if campaign else None)
        return self.answer(request, read, lambda: TimeseriesPointSerializer(
            stats.timeseries(account, window, campaign, converter=converter), many=True).data)


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
        account, window, status = request.account, self.window(request), params.validated_data.get("status")
        converter, campaigns = stats.Converter.for_account(account), stats.campaign_rows(account, status)
        # The page's limit and offset as given: a bad one is a 400 from the paginator, which nothing caches.
        page_params = (request.query_params.get("limit"), request.query_params.get("offset"))
        read = ("campaigns", *stats.read_inputs(account, window, converter), tuple(campaigns), status, params.order_terms, page_params)

        def data() -> dict:
            rows, _ = stats.campaign_list(account, window, status=status, ordering=params.order_terms,
                                          converter=converter, campaigns=campaigns)
            paginator = EnvelopePagination()
            page = paginator.paginate_queryset(_Rows(rows), request, view=self)
            response = paginator.get_paginated_response(CampaignStatSerializer(page, many=True).data)
            return {**response.data, "currency_mismatch": bool(converter.missing), "unconverted_currencies": sorted(converter.missing)}

        return self.answer(request, read, data)


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
