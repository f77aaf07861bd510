"""Django admin for the Meta mirror: synced rows are read-only (Meta is the source); exchange rates are edited here."""
from __future__ import annotations

from django.contrib import admin

from crm_marketing.admin import AccountScopedAdmin
from crm_marketing.admin_display import format_money, local_time_column, money_column
from marketing.models import Ad, AdAccount, AdSet, Campaign, CampaignDay, DailyInsight, ExchangeRate, SyncRun
from marketing.stats.reports import budget_amount


def budget_column(field: str, *, description: str):
    """A Meta budget (minor units, in the ad account's currency) shown in major units: 150000 ARS -> 1,500.00 ARS."""

    @admin.display(description=description, ordering=field)
    def column(self, obj) -> str:
        currency = obj.ad_account.currency
        return format_money(budget_amount(getattr(obj, field), currency), currency)

    return column


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
                    "last_synced_at_local", "backfilled_since", "parked_until"]
    list_filter = ["is_selected", "currency"]
    search_fields = ["name", "meta_ad_account_id"]
    list_select_related = ["account"]
    last_synced_at_local = local_time_column("last_synced_at", description="Last synced at")


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyAdmin):
    list_display = ["name", "meta_campaign_id", "ad_account", "status", "effective_status", "objective",
                    "daily_budget_display", "lifetime_budget_display", "start_time_local", "stop_time_local", "synced_at"]
    list_filter = ["status", "effective_status", "objective"]
    search_fields = ["name", "meta_campaign_id"]
    list_select_related = ["ad_account", "account"]
    daily_budget_display = budget_column("daily_budget", description="Daily budget")
    lifetime_budget_display = budget_column("lifetime_budget", description="Lifetime budget")
    start_time_local = local_time_column("start_time", description="Starts")
    stop_time_local = local_time_column("stop_time", description="Stops")


@admin.register(AdSet)
class AdSetAdmin(ReadOnlyAdmin):
    list_display = ["name", "meta_adset_id", "campaign", "status", "effective_status", "daily_budget_display",
                    "lifetime_budget_display", "synced_at"]
    list_filter = ["status", "effective_status"]
    search_fields = ["name", "meta_adset_id", "meta_campaign_id"]
    list_select_related = ["campaign", "ad_account"]
    daily_budget_display = budget_column("daily_budget", description="Daily budget")
    lifetime_budget_display = budget_column("lifetime_budget", description="Lifetime budget")


@admin.register(Ad)
class AdAdmin(ReadOnlyAdmin):
    list_display = ["name", "meta_ad_id", "adset", "campaign", "status", "effective_status", "synced_at"]
    list_filter = ["status", "effective_status"]
    search_fields = ["name", "meta_ad_id", "meta_adset_id", "meta_campaign_id"]
    list_select_related = ["adset", "campaign"]


@admin.register(DailyInsight)
class DailyInsightAdmin(ReadOnlyAdmin):
    list_display = ["date", "meta_ad_id", "meta_campaign_id", "spend_display", "impressions", "clicks",
                    "link_clicks", "leads", "synced_at"]
    list_filter = ["currency"]
    search_fields = ["meta_ad_id", "meta_adset_id", "meta_campaign_id"]
    date_hierarchy = "date"
    show_full_result_count = False  # the table is large: skip the extra COUNT(*)
    spend_display = money_column("spend", description="Spend")


@admin.register(CampaignDay)
class CampaignDayAdmin(ReadOnlyAdmin):
    """The ROI rollup, derived from the rows above (manage.py rebuild_roi_rollups re-derives it)."""

    list_display = ["day", "meta_campaign_id", "spend_display", "impressions", "clicks", "leads", "opportunities",
                    "revenue_display"]
    list_filter = ["currency"]
    search_fields = ["meta_campaign_id"]
    date_hierarchy = "day"
    show_full_result_count = False
    spend_display = money_column("spend", description="Spend")
    revenue_display = money_column("revenue", description="Revenue")


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = ["created_at_local", "ad_account", "kind", "status", "since", "until", "rows", "graph_calls",
                    "started_at_local", "finished_at_local", "error"]
    list_filter = ["status", "kind"]
    search_fields = ["task_id", "error"]
    list_select_related = ["ad_account", "account"]
    created_at_local = local_time_column("created_at", description="Created at")
    started_at_local = local_time_column("started_at", description="Started at")
    finished_at_local = local_time_column("finished_at", description="Finished at")


@admin.register(ExchangeRate)
class ExchangeRateAdmin(AccountScopedAdmin):
    list_display = ["from_currency", "to_currency", "rate", "account", "updated_at"]
    list_filter = ["to_currency"]
