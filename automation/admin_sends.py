"""The send log in Django admin: read-only, scoped to the staff member's accounts."""
from __future__ import annotations

from django.contrib import admin

from automation.models import MessageSend
from crm_marketing.admin import AccountScopedAdmin
from crm_marketing.admin_display import local_time_column


@admin.register(MessageSend)
class MessageSendAdmin(AccountScopedAdmin):
    list_display = ["id", "lead", "rule_name", "template_name", "status", "why", "due_at_local", "sent_at_local",
                    "delivered_at_local", "read_at_local"]
    list_filter = ["status", "trigger_type", "skip_reason"]
    search_fields = ["lead__first_name", "lead__last_name", "lead__phone", "rule_name", "template_name", "meta_message_id"]
    list_select_related = ["lead", "account"]
    date_hierarchy = "created_at"
    fields = ["account", "lead", "rule", "rule_name", "step", "template", "template_name", "channel", "trigger_type",
              "trigger_key", "status", "skip_reason", "due_at", "next_attempt_at", "attempts", "claimed_at",
              "meta_message_id", "error_code", "error_title", "error_details", "pricing_category", "billable",
              "parameters", "created_at", "sent_at", "delivered_at", "read_at", "failed_at"]
    readonly_fields = fields

    due_at_local = local_time_column("due_at", description="Due")
    sent_at_local = local_time_column("sent_at", description="Sent")
    delivered_at_local = local_time_column("delivered_at", description="Delivered")
    read_at_local = local_time_column("read_at", description="Read")

    @admin.display(description="Why (skip reason or error)")
    def why(self, obj: MessageSend) -> str:
        if obj.skip_reason:
            return obj.get_skip_reason_display()
        if obj.error_code or obj.error_title:
            return f"{obj.error_code or ''} {obj.error_title}".strip()
        return "-"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff and (
            request.user.is_superuser or bool(self.account_ids(request)))
