"""Automation API shapes: templates (read), rules (read and write), the preview, and their inputs.

Inputs are strict (an unknown or read-only field is a 400); the domain checks (approved template,
variables, conditions, duplicates) are the rules service's, shared with Django admin.
"""
from __future__ import annotations

import re

from rest_framework import serializers

from automation.models import AutomationRule, MessageTemplate
from automation.services import rules as rule_service
from automation.services.counters import counters_by
from automation.services.templates import body_text, variables_of
from crm_marketing.api import MAX_DB_INTEGER, StrictSerializerMixin

STATUS_FILTER = re.compile(r"^[A-Za-z_]{1,32}$")
MAX_BULK_RULES = 100


# -- templates ---------------------------------------------------------------------------------------------------
class TemplateSerializer(serializers.ModelSerializer):
    """``id`` is our row id (what a rule step's ``template_id`` takes); Meta's is ``meta_template_id``.
    ``context["counters"]``: {template id: counters} (services.counters, computed for the whole list)."""

    body_text = serializers.SerializerMethodField()
    variables_count = serializers.SerializerMethodField()
    placeholders = serializers.SerializerMethodField()
    sent_count = serializers.SerializerMethodField()
    delivered_count = serializers.SerializerMethodField()
    read_count = serializers.SerializerMethodField()

    class Meta:
        model = MessageTemplate
        fields = ["id", "name", "category", "language", "status", "components", "quality_score", "body_text",
                  "variables_count", "sent_count", "delivered_count", "read_count", "parameter_format", "placeholders",
                  "rejected_reason", "meta_template_id"]

    def get_body_text(self, template) -> str:
        return body_text(template.components)

    def get_variables_count(self, template) -> int:
        return len(variables_of(template))

    def get_placeholders(self, template) -> list[str]:
        return variables_of(template)

    def _counters(self, template) -> dict[str, int]:
        counters = self.context.setdefault("counters", {})
        if template.pk not in counters:
            counters.update(counters_by("template_id", [template.pk]))
        return counters[template.pk]

    def get_sent_count(self, template) -> int:
        return self._counters(template)["sent"]

    def get_delivered_count(self, template) -> int:
        return self._counters(template)["delivered"]

    def get_read_count(self, template) -> int:
        return self._counters(template)["read"]


class TemplateQuery(serializers.Serializer):
    """``status``: one or more (comma separated) Meta statuses, any case. Any status Meta sends is
    accepted, because we store what Meta sends and Meta adds statuses; only malformed text is a 400."""

    status = serializers.CharField(required=False, allow_blank=True, max_length=400)

    def validate_status(self, value: str) -> list[str]:
        statuses = [s.strip().upper() for s in value.split(",") if s.strip()]
        bad = [s for s in statuses if not STATUS_FILTER.match(s)]
        if bad:
            raise serializers.ValidationError("A status is letters and underscores, e.g. APPROVED or PAUSED "
                                              "(several separated by commas).")
        return statuses


# -- rules: output -------------------------------------------------------------------------------------------------
class StepSerializer(serializers.Serializer):
    """``template`` repeats ``template_id``: DESIGN §6 names a step's template ``template`` and the hub reads that."""

    id = serializers.IntegerField()
    order = serializers.IntegerField()
    delay_minutes = serializers.IntegerField()
    template_id = serializers.IntegerField()
    template = serializers.IntegerField(source="template_id")
    template_name = serializers.CharField(source="template.name")
    variables = serializers.JSONField()


class QuietHoursSerializer(serializers.Serializer):
    start = serializers.CharField()
    end = serializers.CharField()


class CountersSerializer(serializers.Serializer):
    sends = serializers.IntegerField()
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    read = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()


class RuleSerializer(serializers.Serializer):
    """DESIGN §6 AutomationRule. ``context["counters"]``: {rule id: counters} (computed for the whole page)."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    trigger_type = serializers.CharField()
    conditions = serializers.JSONField()
    is_active = serializers.BooleanField()
    quiet_hours = serializers.SerializerMethodField()
    max_sends_per_lead_per_day = serializers.IntegerField()
    allow_reentry = serializers.BooleanField()
    exit_on_reply = serializers.BooleanField()
    exit_on_won = serializers.BooleanField()
    no_reply_hours = serializers.IntegerField(allow_null=True)
    flagged_reason = serializers.CharField()
    steps = serializers.SerializerMethodField()
    counters = serializers.SerializerMethodField()
    # The hub's flat names for the same counters (sent, delivered, read, failed).
    sent_count = serializers.SerializerMethodField()
    delivered_count = serializers.SerializerMethodField()
    read_count = serializers.SerializerMethodField()
    failed_count = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_quiet_hours(self, rule) -> QuietHoursSerializer(allow_null=True):
        return rule_service.quiet_hours_of(rule)

    def get_steps(self, rule) -> StepSerializer(many=True):
        return StepSerializer(sorted(rule.steps.all(), key=lambda s: s.order), many=True).data

    def get_counters(self, rule) -> CountersSerializer:
        counters = self.context.setdefault("counters", {})
        if rule.pk not in counters:
            counters.update(rule_service.counters_by_rule([rule.pk]))
        return counters[rule.pk]

    def get_sent_count(self, rule) -> int:
        return self.get_counters(rule)["sent"]

    def get_delivered_count(self, rule) -> int:
        return self.get_counters(rule)["delivered"]

    def get_read_count(self, rule) -> int:
        return self.get_counters(rule)["read"]

    def get_failed_count(self, rule) -> int:
        return self.get_counters(rule)["failed"]


# -- rules: input ------------------------------------------------------------------------------------------------------
class StrictSerializer(StrictSerializerMixin, serializers.Serializer):
    pass


class QuietHoursInput(StrictSerializer):
    start = serializers.TimeField()
    end = serializers.TimeField()


class StepInput(StrictSerializer):
    order = serializers.IntegerField(min_value=1, max_value=rule_service.MAX_STEPS * 10, required=False)
    delay_minutes = serializers.IntegerField(min_value=0, max_value=rule_service.MAX_DELAY_MINUTES, default=0)
    template_id = serializers.IntegerField(min_value=1, max_value=MAX_DB_INTEGER)
    variables = serializers.DictField(child=serializers.CharField(max_length=64), allow_empty=True, default=dict)


class RuleInput(StrictSerializer):
    """A rule to create (name, trigger_type and steps required) or a partial update (anything)."""

    name = serializers.CharField(max_length=200)
    trigger_type = serializers.ChoiceField(choices=AutomationRule.Trigger.values)
    conditions = serializers.DictField(required=False)
    is_active = serializers.BooleanField(required=False)
    quiet_hours = QuietHoursInput(required=False, allow_null=True)
    max_sends_per_lead_per_day = serializers.IntegerField(min_value=1, max_value=rule_service.MAX_DAILY_CAP, required=False)
    allow_reentry = serializers.BooleanField(required=False)
    exit_on_reply = serializers.BooleanField(required=False)
    exit_on_won = serializers.BooleanField(required=False)
    no_reply_hours = serializers.IntegerField(min_value=1, max_value=rule_service.MAX_NO_REPLY_HOURS, required=False, allow_null=True)
    steps = StepInput(many=True, max_length=rule_service.MAX_STEPS)


class BulkRuleItem(RuleInput):
    """An item of POST {"rules": [...]}: with ``id`` it updates that rule (a partial update)."""

    id = serializers.IntegerField(min_value=1, max_value=MAX_DB_INTEGER, required=False)


def validated(serializer_class, data, **kwargs) -> dict:
    """The serializer's validated data, or a 400 whose nested errors are flat ("steps.1.variables")."""
    serializer = serializer_class(data=data, **kwargs)
    if not serializer.is_valid():
        raise serializers.ValidationError(flat_errors(serializer.errors))
    return dict(serializer.validated_data)


def bulk_items(data) -> list[dict]:
    """POST {"rules": [...]}: each item validated alone (an item with ``id`` is a partial update)."""
    if set(data) != {"rules"}:
        raise serializers.ValidationError({name: ["Unknown or read-only field."] for name in sorted(set(data) - {"rules"})})
    items = data["rules"]
    if not isinstance(items, list) or not items or len(items) > MAX_BULK_RULES:
        raise serializers.ValidationError({"rules": [f"A list of 1 to {MAX_BULK_RULES} rules."]})
    clean, errors = [], {}
    for index, item in enumerate(items):
        partial = isinstance(item, dict) and item.get("id") is not None
        one = BulkRuleItem(data=item, partial=partial)
        if one.is_valid():
            clean.append(dict(one.validated_data))
        else:
            errors.update(_prefixed(f"rules.{index}", one.errors))
    if errors:
        raise serializers.ValidationError(errors)
    return clean


def _prefixed(prefix: str, errors) -> dict[str, list[str]]:
    """Nested serializer errors flattened to "rules.0.steps.1.variables": [...]."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            flat.update(_prefixed(f"{prefix}.{key}", value))
    elif isinstance(errors, list) and errors and all(isinstance(e, (dict, list)) for e in errors):
        for index, value in enumerate(errors):
            flat.update(_prefixed(f"{prefix}.{index}", value))
    elif isinstance(errors, list):
        flat[prefix] = [str(e) for e in errors if e]
    else:
        flat[prefix] = [str(errors)]
    return {k: v for k, v in flat.items() if v}


def flat_errors(errors) -> dict[str, list[str]]:
    flat: dict[str, list[str]] = {}
    for key, value in errors.items():
        flat.update(_prefixed(key, value))
    return flat


def service_data(validated: dict) -> dict:
    """Serializer output -> the rules service's ``data`` (quiet hours as times, steps as plain dicts)."""
    data = dict(validated)
    if "steps" in data:
        data["steps"] = [dict(step) for step in data["steps"]]
    if "quiet_hours" in data and data["quiet_hours"] is not None:
        data["quiet_hours"] = dict(data["quiet_hours"])
    return data


class PreviewInput(StrictSerializer):
    lead_id = serializers.IntegerField(min_value=1, max_value=MAX_DB_INTEGER)


class PreviewMessageSerializer(serializers.Serializer):
    order = serializers.IntegerField()
    delay_minutes = serializers.IntegerField()
    template_name = serializers.CharField()
    template_status = serializers.CharField()
    header = serializers.CharField()
    body = serializers.CharField()
    footer = serializers.CharField()
    buttons = serializers.ListField(child=serializers.CharField())
