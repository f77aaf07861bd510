"""/crm/marketing endpoints: ROI stats, campaigns and their insights (reads only).

Roles ceo, admin and marketing; sellers get 403. Every figure is request.account's.

The four hub reads answer their rendered JSON from the stats cache (marketing/services/stats_cache.py)
while the account's rollup version and everything else the payload shows are unchanged: each view keys
the answer on the request's own inputs (window, today, filters, page) and on the account's read state
(marketing.stats.read_state: rollup version, marks not folded yet, exchange rates, Meta connection,
campaign names and statuses), one query; on a miss it computes the answer in the snapshot it read the
state in. A hit skips the figures, the serializer and the JSON encoding (~100 KB for 500 campaigns).
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
from marketing.stats.pending import one_snapshot
from marketing.stats.read_state import ReadState, read_state
from marketing.stats.reports import today_for
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

    def answer(self, request, read: tuple, data: Callable[[], Any], *, campaigns: bool = False,
               campaign_status: str | None = None):
        """``data()`` (a serializer's data, reading its own inputs) as the envelope, its JSON cached under
        ``read`` (the request's own inputs) and the account's read state (read_state: the rollup version,
        the pending marks, rates, Meta connection and, with ``campaigns``, the campaigns' names and
        statuses). A hit costs one query; a miss reads the state again in the snapshot the figures are
        computed in and stores the answer under it. A client asking for indented JSON
        (``Accept: application/json; indent=2``) gets it rendered as usual."""
        if "indent" in (request.accepted_media_type or ""):
            return Response(data())
        account = request.account

        def key(state: ReadState) -> tuple:
            return ("response", *read, account.currency, account.timezone, today_for(account), state)

        def current_state() -> ReadState:
            return read_state(account.pk, account.currency, campaigns=campaigns, campaign_status=campaign_status)

        if stats_cache.enabled():
            state = current_state()
            rendered = stats_cache.lookup(account.pk, key(state), state.token)
            if rendered is not None:
                return enveloped(rendered)
        with one_snapshot():  # the state, the marks and the figures of one moment (PostgreSQL)
            state = current_state() if stats_cache.enabled() else None
            rendered = render_data(data())
            if state is not None:
                stats_cache.store(account.pk, key(state), state.token, rendered)
            return enveloped(rendered)


class MarketingStatsView(_StatsView):
    @extend_schema(operation_id="marketing_stats", parameters=TIME_RANGE_PARAMETERS, responses=MarketingStatsSerializer)
    def get(self, request):
        account, window = request.account, self.window(request)

        def data():
            converter, state = stats.Converter.for_account(account), stats.meta_state(account)
            return MarketingStatsSerializer(stats.marketing_stats(account, window, converter=converter, state=state)).data
        return self.answer(request, ("stats", window), data)


class RoiView(_StatsView):
    @extend_schema(operation_id="marketing_stats_roi", parameters=TIME_RANGE_PARAMETERS, responses=RoiReportSerializer)
    def get(self, request):
        account, window = request.account, self.window(request)

        def data():
            converter, campaigns = stats.Converter.for_account(account), stats.campaign_rows(account)
            return RoiReportSerializer(stats.roi_report(account, window, converter=converter, campaigns=campaigns)).data
        return self.answer(request, ("roi", window), data, campaigns=True)


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

        def data():
            converter = stats.Converter.for_account(account)
            return TimeseriesPointSerializer(stats.timeseries(account, window, campaign, converter=converter), many=True).data
        return self.answer(request, ("timeseries", window, campaign.meta_campaign_id if campaign else None), data)


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
        # The page's limit and offset as given: a bad one is a 400 from the paginator, which nothing caches.
        page_params = (request.query_params.get("limit"), request.query_params.get("offset"))
        read = ("campaigns", window, status, params.order_terms, page_params)

        def data() -> dict:
            converter, campaigns = stats.Converter.for_account(account), stats.campaign_rows(account, status)
            rows, _ = stats.campaign_list(account, window, status=status, ordering=params.order_terms,
                                          converter=converter, campaigns=campaigns)
            paginator = EnvelopePagination()
            page = paginator.paginate_queryset(_Rows(rows), request, view=self)
            response = paginator.get_paginated_response(CampaignStatSerializer(page, many=True).data)
            return {**response.data, "currency_mismatch": bool(converter.missing), "unconverted_currencies": sorted(converter.missing)}

        return self.answer(request, read, data, campaigns=True, campaign_status=status)


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
