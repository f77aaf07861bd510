"""Admin: the Meta connection per account, read-only, and never the token (not even its ciphertext)."""
from __future__ import annotations

from django.contrib import admin

from crm_marketing.admin import AccountScopedAdmin
from crm_marketing.admin_display import local_time_column
from meta_oauth.models import MetaConnection

VISIBLE_FIELDS = ["account", "status", "meta_user_id", "meta_user_name", "token_expires_at", "data_access_expires_at",
                  "scopes", "waba_id", "phone_number_id", "connected_by", "connected_at", "last_error", "updated_at"]


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
