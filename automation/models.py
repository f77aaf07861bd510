"""WhatsApp HSM automation: templates synced from the WABA, rules with ordered steps, and every send.

Invariants live in the database: one row per (rule, step, lead, trigger_key) so a duplicate event
cannot send twice; one active rule per trigger and identical conditions; a send's status is one of
the listed values and a skipped or failed send says why.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from crm_marketing.models import Lead
from crm_marketing.tenancy import AccountOwned
from meta_oauth.models import WhatsAppChannel


def _values(choices: type[models.TextChoices]) -> list[str]:
    return [str(value) for value in choices.values]


class ParameterFormat(models.TextChoices):
    POSITIONAL = "POSITIONAL"
    NAMED = "NAMED"


class TriggerType(models.TextChoices):
    LEAD_CREATED = "lead_created"
    LEAD_STATUS_CHANGED = "lead_status_changed"
    OPPORTUNITY_CREATED = "opportunity_created"
    OPPORTUNITY_STAGE_CHANGED = "opportunity_stage_changed"
    OPPORTUNITY_WON = "opportunity_won"
    NO_REPLY = "no_reply"


class SendStatus(models.TextChoices):
    QUEUED = "queued"
    SENDING = "sending"
    UNKNOWN = "unknown"  # the POST may have reached Meta: wait for a status webhook or reconciliation
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    SKIPPED = "skipped"


class SkipReason(models.TextChoices):
    OPTED_OUT = "opted_out"
    QUIET_HOURS = "quiet_hours"
    TEMPLATE_NOT_APPROVED = "template_not_approved"
    LEAD_REPLIED = "lead_replied"
    CAP_REACHED = "cap_reached"
    OPPORTUNITY_WON = "opportunity_won"
    RULE_INACTIVE = "rule_inactive"
    NO_PHONE = "no_phone"
    NO_CHANNEL = "no_channel"


class MessageTemplate(AccountOwned):
    """A WhatsApp message template of the account's WABA, as Meta last described it.

    ``status`` keeps whatever Meta sends (APPROVED, PENDING, REJECTED, PAUSED, DISABLED, IN_APPEAL,
    PENDING_DELETION, DELETED, LIMIT_EXCEEDED, ARCHIVED, ...): only APPROVED is sendable. Its sent /
    delivered / read / failed figures are counted from its sends (automation.services.counters).
    """

    APPROVED = "APPROVED"

    ParameterFormat = ParameterFormat

    meta_template_id = models.CharField(max_length=32)
    meta_waba_id = models.CharField(max_length=32)
    name = models.CharField(max_length=512)
    language = models.CharField(max_length=16)
    category = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=32)
    quality_score = models.CharField(max_length=16, blank=True, help_text="GREEN, YELLOW, RED or UNKNOWN")
    parameter_format = models.CharField(max_length=16, choices=ParameterFormat.choices, default=ParameterFormat.POSITIONAL)
    components = models.JSONField(default=list, blank=True)
    rejected_reason = models.CharField(max_length=128, blank=True)
    synced_at = models.DateTimeField(default=timezone.now)
    status_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "language"]
        constraints = [
            models.UniqueConstraint(fields=["account", "meta_template_id"], name="messagetemplate_unique_per_account"),
            models.CheckConstraint(condition=Q(parameter_format__in=_values(ParameterFormat)), name="messagetemplate_parameter_format_valid"),
        ]
        indexes = [models.Index(fields=["account", "status"], name="messagetemplate_account_status")]

    def __str__(self) -> str:
        return f"{self.name} ({self.language}, {self.status})"

    @property
    def is_approved(self) -> bool:
        return self.status == self.APPROVED


class AutomationRule(AccountOwned):
    """A follow-up rule: trigger, conditions, exits and ordered steps. Its counters are counted from
    its sends (automation.services.counters), never stored on the rule."""

    Trigger = TriggerType

    name = models.CharField(max_length=200)
    trigger_type = models.CharField(max_length=32, choices=Trigger.choices)
    # {"lead_sources": [...], "lead_statuses": [...], "campaign_ids": [...], "stages": [...]}; an
    # empty or missing list means "any".
    conditions = models.JSONField(default=dict, blank=True)
    # sha256 of the canonical conditions: lets the database refuse two active rules alike.
    conditions_key = models.CharField(max_length=64, editable=False)
    is_active = models.BooleanField(default=True)
    no_reply_hours = models.PositiveIntegerField(null=True, blank=True, help_text="no_reply: hours without an answer from the lead")
    quiet_hours_start = models.TimeField(null=True, blank=True, help_text="Account timezone; sends due inside wait until the end")
    quiet_hours_end = models.TimeField(null=True, blank=True)
    max_sends_per_lead_per_day = models.PositiveSmallIntegerField(default=3)
    allow_reentry = models.BooleanField(default=False, help_text="Let a lead enter this rule again after a first time")
    exit_on_reply = models.BooleanField(default=True, help_text="A reply from the lead ends its pending steps")
    exit_on_won = models.BooleanField(default=True, help_text="A won opportunity ends the lead's pending steps")
    # Opt-outs always end pending steps: a lead who said STOP is never messaged (not a setting).
    flagged_reason = models.CharField(max_length=255, blank=True, help_text="Why the rule needs attention (template paused or rejected)")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "trigger_type", "conditions_key"], condition=Q(is_active=True),
                                    name="automationrule_one_active_per_trigger_conditions"),
            models.CheckConstraint(condition=Q(trigger_type__in=_values(TriggerType)), name="automationrule_trigger_valid"),
            models.CheckConstraint(condition=Q(max_sends_per_lead_per_day__gte=1), name="automationrule_cap_positive"),
            models.CheckConstraint(condition=~Q(trigger_type="no_reply") | Q(no_reply_hours__gte=1),
                                   name="automationrule_no_reply_has_hours"),
            models.CheckConstraint(condition=Q(quiet_hours_start__isnull=True, quiet_hours_end__isnull=True)
                                   | Q(quiet_hours_start__isnull=False, quiet_hours_end__isnull=False),
                                   name="automationrule_quiet_hours_both_or_none"),
        ]
        indexes = [models.Index(fields=["account", "trigger_type", "is_active"], name="automationrule_account_trigger")]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def conditions_key_of(conditions: dict[str, Any] | None) -> str:
        canonical = {key: sorted(str(v) for v in values) for key, values in sorted((conditions or {}).items()) if values}
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()

    def save(self, *args, **kwargs) -> None:
        self.conditions_key = self.conditions_key_of(self.conditions)
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "conditions_key"}
        super().save(*args, **kwargs)


class RuleStep(AccountOwned):
    """One message of a rule: ``delay_minutes`` after the trigger, the template, and its variables.

    ``variables`` maps the template's parameters to whitelisted fields: ``{"1": "lead.first_name"}``
    for positional templates, ``{"first_name": "lead.first_name"}`` for named ones.
    """

    rule = models.ForeignKey(AutomationRule, on_delete=models.CASCADE, related_name="steps")
    order = models.PositiveSmallIntegerField(default=1)
    delay_minutes = models.PositiveIntegerField(default=0)
    template = models.ForeignKey(MessageTemplate, on_delete=models.PROTECT, related_name="steps")
    variables = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["rule", "order", "id"]
        constraints = [models.UniqueConstraint(fields=["rule", "order"], name="rulestep_order_unique_per_rule")]

    def __str__(self) -> str:
        return f"{self.rule} step {self.order}"


class MessageSend(AccountOwned):
    """One template message to one lead for one rule step and one trigger: created before any send.

    Status moves forward only: queued < sending < (unknown) < sent < delivered < read; failed and
    skipped are terminal and carry their reason.
    """

    Status = SendStatus

    SkipReason = SkipReason

    TERMINAL = (Status.FAILED, Status.SKIPPED)
    # The order a status may only move forward in; failed/skipped are terminal from any open state.
    PROGRESS = {Status.QUEUED: 0, Status.SENDING: 1, Status.UNKNOWN: 2, Status.SENT: 3, Status.DELIVERED: 4, Status.READ: 5}

    rule = models.ForeignKey(AutomationRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="sends")
    step = models.ForeignKey(RuleStep, null=True, blank=True, on_delete=models.SET_NULL, related_name="sends")
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="+")
    template = models.ForeignKey(MessageTemplate, null=True, blank=True, on_delete=models.SET_NULL, related_name="sends")
    channel = models.ForeignKey(WhatsAppChannel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    trigger_type = models.CharField(max_length=32, choices=AutomationRule.Trigger.choices)
    trigger_key = models.CharField(max_length=120, help_text="The event that caused this send, e.g. event:123")
    rule_name = models.CharField(max_length=200, blank=True, help_text="Kept for the log if the rule is deleted")
    template_name = models.CharField(max_length=512, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    skip_reason = models.CharField(max_length=32, choices=SkipReason.choices, blank=True)
    parameters = models.JSONField(default=list, blank=True, help_text="The rendered template parameters sent")
    due_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Retry time after a throughput error")
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    meta_message_id = models.CharField(max_length=128, blank=True, help_text="wamid returned by Meta")
    error_code = models.IntegerField(null=True, blank=True)
    error_title = models.CharField(max_length=255, blank=True)
    error_details = models.TextField(blank=True)
    pricing_category = models.CharField(max_length=32, blank=True)
    billable = models.BooleanField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "step", "lead", "trigger_key"], name="messagesend_once_per_rule_step_lead_trigger"),
            models.UniqueConstraint(fields=["meta_message_id"], condition=~Q(meta_message_id=""), name="messagesend_wamid_unique"),
            models.CheckConstraint(condition=Q(status__in=_values(SendStatus)), name="messagesend_status_valid"),
            models.CheckConstraint(condition=Q(skip_reason="") | Q(skip_reason__in=_values(SkipReason)), name="messagesend_skip_reason_valid"),
            models.CheckConstraint(condition=~Q(status="skipped") | ~Q(skip_reason=""), name="messagesend_skipped_has_reason"),
        ]
        indexes = [
            models.Index(fields=["status", "due_at"], name="messagesend_status_due"),
            models.Index(fields=["status", "next_attempt_at"], name="messagesend_status_next"),
            models.Index(fields=["account", "-created_at"], name="messagesend_account_created"),
            models.Index(fields=["lead", "rule", "status"], name="messagesend_lead_rule_status"),
        ]

    def __str__(self) -> str:
        return f"{self.template_name or 'send'} to lead {self.lead_id} ({self.status})"


from automation.engine.models import EnginePass, ThroughputSlot  # noqa: E402,F401  (the engine's bookkeeping)
