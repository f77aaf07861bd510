"""Django admin for automation: rules with their ordered steps (edited here by ceo and admin, viewed by
marketing), a WhatsApp-like preview of each step for a chosen lead, and the synced templates (read-only).

The rule form and its steps validate through the rules service (the API's checks) and are saved by
``save_rule`` in the admin's transaction: an invalid step is a form error and nothing is written.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.forms.models import BaseInlineFormSet, InlineForeignKeyField, construct_instance
from django.utils.html import format_html

from automation.models import AutomationRule, MessageTemplate, RuleStep
from automation.rendering import VARIABLE_FIELDS, field_text, rendered_text
from automation.services import rules as rule_service
from automation.services.counters import counter_aggregates
from automation.services.templates import request_template_sync, variables_of
from crm_marketing.admin import AccountScopedAdmin, AccountScopedForm, member_account_ids
from crm_marketing.admin_display import local_time_column
from crm_marketing.errors import DomainError
from crm_marketing.models import Account, Lead
from crm_marketing.tenancy import MANAGER_ROLES
from crm_marketing.validation import StorableJSONFormField

PREVIEW_LEADS = 50


def manager_account_ids(user) -> list[int]:
    return member_account_ids(user, MANAGER_ROLES)


def may_manage(request, obj=None) -> bool:
    """ceo and admin edit rules; marketing only looks (whatever Django permissions they were given)."""
    if request.user.is_superuser:
        return True
    accounts = manager_account_ids(request.user)
    return bool(accounts) if obj is None else obj.account_id in accounts


class RuleNotSaved(Exception):
    """The rules service refused the write after the forms validated (a race): undo, say why, no 500."""


class ServiceValidatedForm(forms.ModelForm):
    """The model's constraints are checked by the rules service (with messages a person can act on)
    and enforced by the database; Django's generic "Constraint ... is violated" would only repeat them."""

    def _post_clean(self):
        exclude = self._get_validation_exclusions()
        exclude.update(name for name, field in self.fields.items() if isinstance(field, InlineForeignKeyField))
        try:
            self.instance = construct_instance(self, self.instance, self._meta.fields, self._meta.exclude)
        except ValidationError as error:
            self._update_errors(error)
        try:
            self.instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
        except ValidationError as error:
            self._update_errors(error)


CONDITIONS_HELP = ('JSON, e.g. {"lead_sources": ["meta_lead_ads"], "lead_statuses": ["new"]}; keys: '
                   + ", ".join(f"{key} ({', '.join(values) if values else 'Meta campaign ids'})"
                               for key, values in rule_service.CONDITION_CHOICES.items())
                   + ". An empty or missing list means any.")
VARIABLES_HELP = ('JSON mapping each template placeholder to a field, e.g. {"1": "lead.first_name"}; fields: '
                  + ", ".join(VARIABLE_FIELDS) + ".")


class AutomationRuleForm(ServiceValidatedForm, AccountScopedForm):
    class Meta:
        model = AutomationRule
        fields = ["account", "name", "trigger_type", "conditions", "is_active", "no_reply_hours", "quiet_hours_start",
                  "quiet_hours_end", "max_sends_per_lead_per_day", "allow_reentry", "exit_on_reply", "exit_on_won"]
        help_texts = {"conditions": CONDITIONS_HELP}
        widgets = {"conditions": forms.Textarea(attrs={"rows": 3, "cols": 60})}

    def clean(self):
        data = super().clean()
        values = {name: data.get(name) for name in rule_service.RULE_FIELDS}
        for name, problems in rule_service.rule_field_errors(values).items():
            for problem in problems:
                self.add_error("quiet_hours_start" if name == "quiet_hours" else name, problem)
        data["conditions"], data["no_reply_hours"] = values["conditions"], values["no_reply_hours"]
        account = data.get("account")
        if values["is_active"] and account is not None and values["trigger_type"] and "conditions" not in self.errors:
            key = AutomationRule.conditions_key_of(values["conditions"])
            twins = AutomationRule.objects.filter(account=account, is_active=True, trigger_type=values["trigger_type"],
                                                  conditions_key=key).exclude(pk=self.instance.pk)
            if twins.exists():
                self.add_error(None, rule_service.duplicate_rule(values["trigger_type"]).message)
        return data


class RuleStepForm(ServiceValidatedForm):
    class Meta:
        model = RuleStep
        fields = ["order", "delay_minutes", "template", "variables"]
        help_texts = {"variables": VARIABLES_HELP}
        widgets = {"variables": forms.Textarea(attrs={"rows": 3, "cols": 40})}

    def validate_unique(self):
        """Two steps of this form with one order are refused by the formset; against the database the
        orders are rewritten together, so a swap of two steps' orders is fine."""


class RuleStepFormSet(BaseInlineFormSet):
    def kept_forms(self) -> list[forms.Form]:
        return [form for form in self.forms if form.has_changed() or form.instance.pk
                if not (self.can_delete and self._should_delete_form(form)) and hasattr(form, "cleaned_data")]

    def step_data(self) -> list[dict]:
        rows = [{name: form.cleaned_data.get(name) for name in ("order", "delay_minutes", "template", "variables")}
                for form in self.kept_forms()]
        return sorted(rows, key=lambda row: row["order"] or 0)

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        rule = self.instance
        if not rule.account_id:
            return  # the rule form already says why
        forms_in_order = sorted(self.kept_forms(), key=lambda form: form.cleaned_data.get("order") or 0)
        previous = {s.order: s.template_id for s in RuleStep.objects.filter(rule_id=rule.pk)} if rule.pk else {}
        _, problems = rule_service.step_errors(rule.account, self.step_data(), previous=previous)
        for key, messages_ in problems.items():
            parts = key.split(".")
            if len(parts) == 3:
                form = forms_in_order[int(parts[1])]
                field = "template" if parts[2] == "template_id" else parts[2]
                for message in messages_:
                    form.add_error(field, message)
            else:
                raise ValidationError(messages_)


def template_label(template: MessageTemplate) -> str:
    names = variables_of(template)
    return f"{template.name} ({template.language}, {template.status})" + (f" - variables {', '.join(names)}" if names else "")


class RuleStepInline(admin.TabularInline):
    model = RuleStep
    form = RuleStepForm
    formset = RuleStepFormSet
    formfield_overrides = {models.JSONField: {"form_class": StorableJSONFormField}}
    extra = 1
    ordering = ["order"]

    def get_extra(self, request, obj=None, **kwargs):
        return 0 if obj is not None and obj.steps.exists() else 1

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        templates = MessageTemplate.objects.order_by("name", "language")
        if obj is not None:
            templates = templates.filter(account=obj.account)
        elif not request.user.is_superuser:
            templates = templates.filter(account__in=manager_account_ids(request.user))
        fields = formset.form.base_fields
        fields["template"].queryset = templates
        fields["template"].label_from_instance = template_label
        if obj is not None:  # "Add another" starts after the last step
            fields["order"].initial = max(obj.steps.values_list("order", flat=True), default=0) + 1
        return formset

    def has_view_permission(self, request, obj=None):
        return True  # rows are the rule's: whoever may see the rule sees its steps

    def has_add_permission(self, request, obj=None):
        return may_manage(request, obj)

    def has_change_permission(self, request, obj=None):
        return may_manage(request, obj)

    def has_delete_permission(self, request, obj=None):
        return may_manage(request, obj)


class NeedsAttentionFilter(admin.SimpleListFilter):
    title = "attention"
    parameter_name = "flagged"

    def lookups(self, request, model_admin):
        return [("yes", "Needs attention"), ("no", "OK")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(flagged_reason="")
        if self.value() == "no":
            return queryset.filter(flagged_reason="")
        return queryset


@admin.register(AutomationRule)
class AutomationRuleAdmin(AccountScopedAdmin):
    form = AutomationRuleForm
    inlines = [RuleStepInline]
    list_display = ["name", "account", "trigger_type", "is_active", "steps_count", "counters_line", "flag", "updated_at_local"]
    list_filter = [NeedsAttentionFilter, "trigger_type", "is_active"]
    search_fields = ["name"]
    readonly_fields = ["flagged_reason", "counters", "created_by", "created_at", "updated_at"]
    change_form_template = "admin/automation/automationrule/change_form.html"

    # -- who may do what --------------------------------------------------------------------------------
    def has_add_permission(self, request):
        return super().has_add_permission(request) and may_manage(request)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and may_manage(request, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and may_manage(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.related_model is Account and field is not None and not request.user.is_superuser:
            field.queryset = field.queryset.filter(pk__in=manager_account_ids(request.user))
        return field

    # -- lists ------------------------------------------------------------------------------------------------
    def get_queryset(self, request):
        steps = RuleStep.objects.filter(rule=OuterRef("pk")).order_by().values("rule").annotate(n=Count("pk")).values("n")
        figures = counter_aggregates("sends__", ("sends", "delivered", "read", "failed"))
        return super().get_queryset(request).select_related("account").annotate(
            n_steps=Coalesce(Subquery(steps), 0), **{f"n_{name}": count for name, count in figures.items()})

    updated_at_local = local_time_column("updated_at", description="Updated at")

    @admin.display(description="steps")
    def steps_count(self, rule) -> int:
        return rule.n_steps

    @admin.display(description="sends / delivered / read / failed")
    def counters_line(self, rule) -> str:
        return f"{rule.n_sends} / {rule.n_delivered} / {rule.n_read} / {rule.n_failed}"

    @admin.display(description="attention")
    def flag(self, rule) -> str:
        if not rule.flagged_reason:
            return ""
        return format_html('<span style="color:#ba2121;font-weight:bold" title="{}">&#9888; {}</span>',
                           rule.flagged_reason, rule.flagged_reason)

    @admin.display(description="counters")
    def counters(self, rule) -> str:
        if rule.pk is None:
            return "-"
        counts = rule_service.counters_by_rule([rule.pk])[rule.pk]
        return ", ".join(f"{name} {counts[name]}" for name in rule_service.COUNTER_NAMES)

    # -- the change page ------------------------------------------------------------------------------------------
    def change_view(self, request, object_id, form_url="", extra_context=None):
        rule = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if rule is not None:
            if rule.flagged_reason and request.method == "GET":
                messages.warning(request, f"This rule needs attention: {rule.flagged_reason}.")
            extra_context.update(self.preview_context(request, rule))
        return super().change_view(request, object_id, form_url, extra_context)

    def preview_context(self, request, rule: AutomationRule) -> dict:
        """The steps rendered for ?preview_lead=<id> (default: the account's newest lead), or with field names."""
        leads = list(Lead.objects.filter(account=rule.account).order_by("-created_at", "-id")[:PREVIEW_LEADS])
        asked, lead, problem = request.GET.get("preview_lead", ""), None, ""
        if asked:
            lead = Lead.objects.filter(account=rule.account, pk=int(asked)).first() if asked.isdigit() and len(asked) < 19 else None
            problem = "" if lead is not None else f"No lead {asked[:30]} in {rule.account.name}."
        elif leads:
            lead = leads[0]
        if lead is not None:
            bubbles = rule_service.preview_rule(rule, lead)
        else:
            bubbles = [{"order": s.order, "delay_minutes": s.delay_minutes, "template_name": s.template.name,
                        "template_status": s.template.status,
                        **rendered_text(s.template.components, field_text(s.variables if isinstance(s.variables, dict) else {}))}
                       for s in rule.steps.select_related("template").order_by("order")]
        if lead is not None and lead not in leads:
            leads.insert(0, lead)
        return {"show_preview": True, "preview_leads": leads, "preview_lead": lead, "preview_problem": problem, "preview_bubbles": bubbles}

    # -- saving through the service ----------------------------------------------------------------------------------
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except RuleNotSaved as refused:  # the admin's transaction is rolled back: nothing of the rule was written
            messages.error(request, f"Not saved: {refused}")
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request, obj, form, change):
        """Deferred to save_related, where the steps are known: rule and steps are written together."""
        if not request.user.is_superuser and obj.account_id not in manager_account_ids(request.user):
            raise PermissionDenied("Only ceo and admin members change automation rules.")

    def save_related(self, request, form, formsets, change):
        steps_formset = next(f for f in formsets if isinstance(f, RuleStepFormSet))
        data = {name: form.cleaned_data.get(name) for name in rule_service.RULE_FIELDS}
        data["steps"] = steps_formset.step_data()
        try:
            rule_service.save_rule(form.instance.account, data, actor=request.user, rule=form.instance, request=request)
        except DomainError as error:  # e.g. a twin rule activated between the form's check and this write
            raise RuleNotSaved(error.message) from None
        for formset in formsets:
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def delete_model(self, request, obj):
        rule_service.delete_rule(obj, actor=request.user, request=request)

    def delete_queryset(self, request, queryset):
        for rule in queryset:
            rule_service.delete_rule(rule, actor=request.user, request=request)


@admin.register(MessageTemplate)
class MessageTemplateAdmin(AccountScopedAdmin):
    """Synced from Meta: read-only here. "Sync templates now" queues a sync of the selected rows' accounts."""

    list_display = ["name", "language", "category", "status", "quality_score", "sent_count", "delivered_count", "read_count",
                    "failed_count", "account", "synced_at_local"]
    list_select_related = ["account"]
    synced_at_local = local_time_column("synced_at", description="Synced at")
    list_filter = ["status", "category", "language"]
    search_fields = ["name", "meta_template_id"]
    actions = ["sync_templates_now"]
    change_list_template = "admin/automation/messagetemplate/change_list.html"

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {**(extra_context or {}), "can_sync": may_manage(request)})

    def get_queryset(self, request):
        figures = counter_aggregates("sends__", ("sent", "delivered", "read", "failed"))
        return super().get_queryset(request).annotate(**{f"n_{name}": count for name, count in figures.items()})

    @admin.display(description="sent", ordering="n_sent")
    def sent_count(self, template) -> int:
        return template.n_sent

    @admin.display(description="delivered", ordering="n_delivered")
    def delivered_count(self, template) -> int:
        return template.n_delivered

    @admin.display(description="read", ordering="n_read")
    def read_count(self, template) -> int:
        return template.n_read

    @admin.display(description="failed", ordering="n_failed")
    def failed_count(self, template) -> int:
        return template.n_failed

    def get_urls(self):
        sync = path("sync/", self.admin_site.admin_view(self.sync_view), name="automation_messagetemplate_sync")
        return [sync, *super().get_urls()]

    def sync_view(self, request):
        """The list's "Sync templates now" button (POST): every account where the user is ceo or admin, so a
        first sync works before any template exists to select."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        accounts = Account.objects.filter(pk__in=manager_account_ids(request.user)).order_by("name")
        if not accounts:
            messages.error(request, "Only ceo and admin members sync templates.")
        for account in accounts:
            self._queue_sync(request, account)
        return HttpResponseRedirect(reverse("admin:automation_messagetemplate_changelist"))

    def _queue_sync(self, request, account) -> None:
        try:
            task_id = request_template_sync(account, actor=request.user, request=request)
        except DomainError as error:
            messages.error(request, f"{account.name}: {error.message}")
        else:
            messages.success(request, f"{account.name}: template sync queued (task {task_id}).")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Sync templates now (the selected templates' accounts)")
    def sync_templates_now(self, request, queryset):
        allowed = set(manager_account_ids(request.user))
        for account in Account.objects.filter(pk__in=queryset.values("account_id")).order_by("name"):
            if not request.user.is_superuser and account.pk not in allowed:
                messages.error(request, f"{account.name}: only ceo and admin members sync templates.")
                continue
            self._queue_sync(request, account)


from automation import admin_sends  # noqa: E402,F401  (the send log, registered by the engine)
