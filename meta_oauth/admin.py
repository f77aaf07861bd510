"""Admin: the Meta connection and assets (WhatsApp channels, pages) per account, read-mostly, and never a
token (not even its ciphertext)."""
from __future__ import annotations

from django.contrib import admin

from crm_marketing.admin import AccountScopedAdmin
from crm_marketing.admin_display import local_time_column
from crm_marketing.tenancy import MANAGER_ROLES
from meta_oauth.models import MetaConnection, MetaPage, WhatsAppChannel

VISIBLE_FIELDS = ["account", "status", "meta_user_id", "meta_user_name", "token_expires_at", "data_access_expires_at",
                  "scopes", "connected_by", "connected_at", "last_error", "updated_at"]


@admin.register(MetaConnection)
class MetaConnectionAdmin(AccountScopedAdmin):
    list_display = ["account", "status", "meta_user_name", "token_expires_at_local", "connected_by", "connected_at_local"]
    list_filter = ["status"]
    fields = VISIBLE_FIELDS
    readonly_fields = VISIBLE_FIELDS
    list_select_related = ["account", "connected_by"]
    token_expires_at_local = local_time_column("token_expires_at", description="Token expires at")
    connected_at_local = local_time_column("connected_at", description="Connected at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # disconnect through the hub, which keeps the audit trail


@admin.register(WhatsAppChannel)
class WhatsAppChannelAdmin(AccountScopedAdmin):
    """Chosen through the hub (which subscribes the WABA); here staff read them and may correct the
    throughput Meta granted the number (the automation limiter reads it)."""

    admin_roles = MANAGER_ROLES

    list_display = ["__str__", "account", "meta_waba_id", "meta_phone_number_id", "display_phone_number", "quality_rating",
                    "messaging_limit_tier", "throughput_mps", "is_selected", "subscribed_at_local"]
    list_filter = ["is_selected", "quality_rating"]
    search_fields = ["meta_phone_number_id", "display_phone_number", "verified_name"]
    list_select_related = ["account"]
    fields = ["account", "meta_waba_id", "meta_phone_number_id", "display_phone_number", "verified_name", "quality_rating",
              "messaging_limit_tier", "throughput_mps", "is_selected", "subscribed_at", "created_at", "updated_at"]
    readonly_fields = [f for f in fields if f != "throughput_mps"]
    subscribed_at_local = local_time_column("subscribed_at", description="Subscribed at")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(MetaPage)
class MetaPageAdmin(AccountScopedAdmin):
    """Subscribed through the hub; read-only here, and never the page token (not even its ciphertext)."""

    admin_roles = MANAGER_ROLES

    list_display = ["__str__", "account", "meta_page_id", "subscribed_at_local", "created_at_local"]
    search_fields = ["meta_page_id", "name"]
    list_select_related = ["account"]
    fields = ["account", "meta_page_id", "name", "subscribed_at", "created_at", "updated_at"]
    readonly_fields = fields
    subscribed_at_local = local_time_column("subscribed_at", description="Subscribed at")
    created_at_local = local_time_column("created_at", description="Created at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
