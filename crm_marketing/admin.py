"""Django admin, scoped per account: staff see and edit only their accounts' rows.

Only members with a role that sees every lead of the account (ceo, admin, marketing) get its rows
here; sellers, who see only their own leads through the API, get none. Accounts and memberships
(who holds which role) are for ceo and admin only. A page or button a staff member could open only
to meet a 403 is not shown: a model whose rows he cannot have is off his index, and "Add" appears
only where saving is allowed.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin import widgets
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models

from crm_marketing import services
from crm_marketing.admin_display import local_time_column, money_column
from crm_marketing.models import (Account, EventDelivery, Lead, LeadTouch, Membership, Opportunity, OutboxEvent, Sale, SystemEvent,
                                  WebhookEvent, WebhookHandlerOutcome)
from crm_marketing.tenancy import MANAGER_ROLES, MARKETING_ROLES
from crm_marketing.validation import StorableJSONFormField, validate_json_object


admin.site.site_header = "CRM Ventas Marketing"
admin.site.site_title = "CRM Ventas Marketing"
admin.site.index_title = "CRM Ventas Marketing administration"


def member_account_ids(user, roles=MARKETING_ROLES) -> list[int]:
    """The accounts in which ``user`` holds one of ``roles``."""
    return list(Membership.objects.filter(user=user, role__in=roles).values_list("account_id", flat=True))


class ScopedRawIdWidget(widgets.ForeignKeyRawIdWidget):
    """The raw-id input, labelled only with a row the staff member may see: Django's own widget
    looks any id up unscoped, so ``add/?lead=<id>`` would print another account's lead name."""

    def __init__(self, rel, admin_site, queryset, **kwargs):
        super().__init__(rel, admin_site, **kwargs)
        self.queryset = queryset

    def label_and_url_for_value(self, value):
        try:
            visible = self.queryset.filter(**{self.rel.get_related_field().name: value}).exists()
        except (TypeError, ValueError, ValidationError):
            visible = False
        return super().label_and_url_for_value(value) if visible else ("", "")


class AccountScopedForm(forms.ModelForm):
    """A row may only link to rows of its own account (a member of two accounts must not tie an
    acme opportunity to a globex lead)."""

    def clean(self):
        cleaned = super().clean()
        account = cleaned.get("account")
        account_id = account.pk if isinstance(account, Account) else getattr(self.instance, "account_id", None)
        for name, value in list(cleaned.items()):
            linked_account_id = getattr(value, "account_id", None) if isinstance(value, models.Model) else None
            if name != "account" and account_id is not None and linked_account_id not in (None, account_id):
                self.add_error(name, "Belongs to another account than this row.")
        return cleaned


def adopt_saved(obj: models.Model, saved: models.Model) -> None:
    """Make the admin's instance the row a service saved (the admin logs and redirects with it)."""
    obj.pk = saved.pk
    obj._state.adding = False
    obj.refresh_from_db()


class AccountScopedAdmin(admin.ModelAdmin):
    """Base of every admin of an AccountOwned model. Superusers see all accounts."""

    account_field = "account"
    admin_roles = MARKETING_ROLES  # the roles that get an account's rows in this admin
    form = AccountScopedForm
    # JSON too deep or unstorable is a form error (the model's clean_fields checks dates and JSON too).
    formfield_overrides = {models.JSONField: {"form_class": StorableJSONFormField}}

    def account_ids(self, request) -> list[int]:
        return member_account_ids(request.user, self.admin_roles)

    def has_a_role_here(self, request) -> bool:
        return request.user.is_superuser or bool(self.account_ids(request))

    def has_module_permission(self, request):
        return super().has_module_permission(request) and self.has_a_role_here(request)

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) and self.has_a_role_here(request)

    def has_add_permission(self, request):
        return super().has_add_permission(request) and self.has_a_role_here(request)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and self.has_a_role_here(request)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.account_field}__in": self.account_ids(request)})

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if request.user.is_superuser or field is None:
            return field
        account_ids = self.account_ids(request)
        model = db_field.related_model
        if model is Account:
            field.queryset = field.queryset.filter(pk__in=account_ids)
            if len(account_ids) == 1:  # a member of one account finds it chosen, with no empty choice
                field.initial, field.empty_label = account_ids[0], None
        elif any(f.name == "account" for f in model._meta.fields):
            field.queryset = field.queryset.filter(account__in=account_ids)
        elif model._meta.label == "auth.User" or model._meta.model_name == "user":
            field.queryset = field.queryset.filter(memberships__account__in=account_ids).distinct()
        if isinstance(field.widget, widgets.ForeignKeyRawIdWidget):
            raw = field.widget
            field.widget = ScopedRawIdWidget(raw.rel, raw.admin_site, field.queryset, attrs=raw.attrs, using=raw.db)
        return field

    def check_account(self, request, obj) -> None:
        if not request.user.is_superuser and getattr(obj, f"{self.account_field}_id") not in self.account_ids(request):
            raise PermissionDenied("Not your account.")

    def save_model(self, request, obj, form, change):
        self.check_account(request, obj)
        super().save_model(request, obj, form, change)


@admin.register(Account)
class AccountAdmin(AccountScopedAdmin):
    account_field = "pk"
    admin_roles = MANAGER_ROLES
    list_display = ["name", "slug", "currency", "timezone", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}

    def has_add_permission(self, request):
        return request.user.is_superuser  # what save_model allows

    def get_queryset(self, request):
        queryset = admin.ModelAdmin.get_queryset(self, request)
        return queryset if request.user.is_superuser else queryset.filter(pk__in=self.account_ids(request))

    def save_model(self, request, obj, form, change):
        if not request.user.is_superuser and (not change or obj.pk not in self.account_ids(request)):
            raise PermissionDenied("Only superusers create accounts.")
        admin.ModelAdmin.save_model(self, request, obj, form, change)


@admin.register(Membership)
class MembershipAdmin(AccountScopedAdmin):
    admin_roles = MANAGER_ROLES  # roles are privileges: a marketing member must not grant himself ceo
    list_display = ["user", "account", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["user", "account"]


class OpportunityInline(admin.TabularInline):
    """The lead's opportunities, read-only: each opens in its own form, which sets the account and
    checks the closed-stage constraint (an inline row would be saved without its account)."""

    model = Opportunity
    extra = 0
    fields = ["title", "stage", "amount", "currency", "closed_at"]
    readonly_fields = fields
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class LeadAdminForm(AccountScopedForm):
    """The API's rules for a lead's fields (crm_marketing.validation)."""

    class Meta:
        model = Lead
        fields = "__all__"

    def clean_external_ids(self):
        value = self.cleaned_data.get("external_ids")
        validate_json_object(value)
        return value


@admin.register(Lead)
class LeadAdmin(AccountScopedAdmin):
    form = LeadAdminForm
    list_display = ["name", "phone", "email", "status", "lead_source", "meta_campaign_id", "seller", "created_at_local"]
    list_filter = ["status", "lead_source"]
    search_fields = ["first_name", "last_name", "phone", "email", "meta_campaign_id", "meta_ad_id"]
    date_hierarchy = "created_at"
    readonly_fields = ["status_changed_at", "status_changed_by", "opted_out_at", "last_inbound_at", "updated_at"]
    inlines = [OpportunityInline]
    list_select_related = ["seller", "account"]
    created_at_local = local_time_column("created_at", description="Created at")

    def save_model(self, request, obj, form, change):
        """Creates and edits go through the CRM services, like the API: the audit row, who changed
        the status and when, and the domain events (lead_created, lead_status_changed)."""
        self.check_account(request, obj)
        if not change:
            fields = {name: form.cleaned_data[name] for name in form.cleaned_data if name != "account"}
            lead = services.create_lead(obj.account, actor=request.user, request=request, **fields)
        else:
            fields = {name: form.cleaned_data[name] for name in form.changed_data}
            lead = services.update_lead(Lead.objects.get(pk=obj.pk), actor=request.user, request=request, **fields)
        adopt_saved(obj, lead)


@admin.register(LeadTouch)
class LeadTouchAdmin(AccountScopedAdmin):
    """Written by the Meta webhooks (a form fill, an ad click to WhatsApp): viewable, never typed in."""

    list_display = ["lead", "lead_source", "meta_campaign_id", "meta_ad_id", "touched_at_local"]
    list_filter = ["lead_source"]
    raw_id_fields = ["lead"]
    list_select_related = ["lead", "account"]
    touched_at_local = local_time_column("touched_at", description="Touched at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class OpportunityAdminForm(AccountScopedForm):
    """The API's stage rules, as form errors: open on creation, no change once won or lost, an
    amount to close as won."""

    class Meta:
        model = Opportunity
        fields = "__all__"

    def clean(self):
        data = super().clean()
        stage, amount = data.get("stage"), data.get("amount")
        original = Opportunity.objects.filter(pk=self.instance.pk).first() if self.instance.pk else None
        if original is None and stage in Opportunity.CLOSED_STAGES:
            self.add_error("stage", "A new opportunity starts open; close it afterwards.")
        elif original is not None and original.is_closed and self.changed_data:
            self.add_error(None, f"The opportunity is already {original.stage}; it cannot change.")
        elif stage == Opportunity.Stage.WON and (amount is None or amount <= 0):
            self.add_error("amount", "Required and above 0 to close as won.")
        return data


@admin.register(Opportunity)
class OpportunityAdmin(AccountScopedAdmin):
    """Creates and edits go through the CRM services, so closing as won records the sale and
    publishes the same events as the API."""

    form = OpportunityAdminForm
    list_display = ["__str__", "lead", "stage", "amount_display", "seller", "created_at_local", "closed_at_local"]
    list_filter = ["stage"]
    search_fields = ["title", "lead__first_name", "lead__last_name", "lead__phone"]
    raw_id_fields = ["lead"]
    readonly_fields = ["closed_at", "stage_changed_at", "stage_changed_by"]
    list_select_related = ["lead", "seller", "account"]
    amount_display = money_column("amount", description="Amount")
    created_at_local = local_time_column("created_at", description="Created at")
    closed_at_local = local_time_column("closed_at", description="Closed at")

    def save_model(self, request, obj, form, change):
        self.check_account(request, obj)
        if not change:
            fields = {name: form.cleaned_data[name] for name in form.cleaned_data if name not in ("account", "lead")}
            opportunity = services.create_opportunity(obj.account, lead=form.cleaned_data["lead"], actor=request.user,
                                                      request=request, **fields)
        else:
            fields = {name: form.cleaned_data[name] for name in form.changed_data}
            opportunity = services.update_opportunity(Opportunity.objects.get(pk=obj.pk), actor=request.user,
                                                      request=request, **fields)
        adopt_saved(obj, opportunity)


@admin.register(Sale)
class SaleAdmin(AccountScopedAdmin):
    list_display = ["amount_display", "lead", "opportunity", "status", "lead_source", "closed_at_local"]
    list_filter = ["status"]
    raw_id_fields = ["lead", "opportunity"]
    readonly_fields = ["lead_source", "meta_campaign_id"]  # copied from the lead on save
    date_hierarchy = "closed_at"
    list_select_related = ["lead", "opportunity", "account"]
    amount_display = money_column("amount", description="Amount")
    closed_at_local = local_time_column("closed_at", description="Closed at")


@admin.register(SystemEvent)
class SystemEventAdmin(AccountScopedAdmin):
    admin_roles = MANAGER_ROLES  # the audit trail (who did what, from which address) is the managers'
    list_display = ["created_at_local", "account", "actor", "action", "target_type", "target_id", "ip"]
    list_filter = ["action"]
    list_select_related = ["account", "actor"]
    created_at_local = local_time_column("created_at", description="Created at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class WebhookHandlerOutcomeInline(ReadOnlyInline):
    """What each handler made of the change: a retry re-runs only the failed ones."""

    model = WebhookHandlerOutcome
    fields = ["handler", "status", "result", "error", "attempts", "updated_at"]
    readonly_fields = fields


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    """Raw Meta deliveries: many arrive before their account is known, so superusers only."""

    inlines = [WebhookHandlerOutcomeInline]

    list_display = ["received_at", "field", "dedupe_key", "account", "status", "attempts", "result"]
    list_filter = ["status", "field"]
    search_fields = ["dedupe_key", "entry_id"]
    readonly_fields = [f.name for f in WebhookEvent._meta.fields]

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class EventDeliveryInline(ReadOnlyInline):
    model = EventDelivery
    fields = ["subscriber", "status", "attempts", "last_error", "next_attempt_at", "delivered_at"]
    readonly_fields = fields


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    """Published domain events and each subscriber's delivery; an undelivered one with no next
    attempt used up its retries. Superusers only (the outbox is infrastructure)."""

    list_display = ["created_at", "name", "account", "delivered_at", "next_attempt_at"]
    list_filter = ["name", ("delivered_at", admin.EmptyFieldListFilter)]
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]
    inlines = [EventDeliveryInline]

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
