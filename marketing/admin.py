"""Django admin for the Meta mirror: synced rows are read-only (Meta is the source); exchange rates are edited here."""
from __future__ import annotations

from django.contrib import admin

from crm_marketing.admin import AccountScopedAdmin
from marketing.models import Ad, AdAccount, AdSet, Campaign, CampaignDay, DailyInsight, ExchangeRate, SyncRun


class ReadOnlyAdmin(AccountScopedAdmin):
    """Rows written by the sync: viewable, never added, changed or deleted by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AdAccount)
class AdAccountAdmin(ReadOnlyAdmin):
    list_display = ["name", "meta_ad_account_id", "account", "currency", "timezone_name", "is_selected",
                    "last_synced_at", "backfilled_since", "parked_until"]
    list_filter = ["is_selected", "currency"]
    search_fields = ["name", "meta_ad_account_id"]
    list_select_related = ["account"]


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyAdmin):
    list_display = ["name", "meta_campaign_id", "ad_account", "status", "effective_status", "objective",
                    "daily_budget", "lifetime_budget", "start_time", "stop_time", "synced_at"]
    list_filter = ["status", "effective_status", "objective"]
    search_fields = ["name", "meta_campaign_id"]
    list_select_related = ["ad_account"]


@admin.register(AdSet)
class AdSetAdmin(ReadOnlyAdmin):
    list_display = ["name", "meta_adset_id", "campaign", "status", "effective_status", "daily_budget",
                    "lifetime_budget", "synced_at"]
    list_filter = ["status", "effective_status"]
    search_fields = ["name", "meta_adset_id", "meta_campaign_id"]
    list_select_related = ["campaign"]


@admin.register(Ad)
class AdAdmin(ReadOnlyAdmin):
    list_display = ["name", "meta_ad_id", "adset", "campaign", "status", "effective_status", "synced_at"]
    list_filter = ["status", "effective_status"]
    search_fields = ["name", "meta_ad_id", "meta_adset_id", "meta_campaign_id"]
    list_select_related = ["adset", "campaign"]


@admin.register(DailyInsight)
class DailyInsightAdmin(ReadOnlyAdmin):
    list_display = ["date", "meta_ad_id", "meta_campaign_id", "spend", "currency", "impressions", "clicks",
                    "link_clicks", "leads", "synced_at"]
    list_filter = ["currency"]
    search_fields = ["meta_ad_id", "meta_adset_id", "meta_campaign_id"]
    date_hierarchy = "date"
    show_full_result_count = False  # the table is large: skip the extra COUNT(*)


@admin.register(CampaignDay)
class CampaignDayAdmin(ReadOnlyAdmin):
    """The ROI rollup, derived from the rows above (manage.py rebuild_roi_rollups re-derives it)."""

    list_display = ["day", "meta_campaign_id", "currency", "spend", "impressions", "clicks", "leads", "opportunities",
                    "revenue"]
    list_filter = ["currency"]
    search_fields = ["meta_campaign_id"]
    date_hierarchy = "day"
    show_full_result_count = False


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "ad_account", "kind", "status", "since", "until", "rows", "graph_calls",
                    "started_at", "finished_at", "error"]
    list_filter = ["status", "kind"]
    search_fields = ["task_id", "error"]
    list_select_related = ["ad_account"]


@admin.register(ExchangeRate)
class ExchangeRateAdmin(AccountScopedAdmin):
    list_display = ["from_currency", "to_currency", "rate", "account", "updated_at"]
    list_filter = ["to_currency"]
