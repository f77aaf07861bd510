"""One stored Meta webhook change: the raw change, Meta's id for it, and what processing made of it."""
from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone

from crm_marketing.tenancy import Account


class WebhookEventStatus(models.TextChoices):
    RECEIVED = "received"
    PROCESSING = "processing"
    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"


class WebhookEvent(models.Model):
    """A change of a Meta webhook delivery, stored before any processing.

    ``(field, dedupe_key)`` is unique, so a redelivery stores nothing new. The account is unknown
    on arrival (Meta sends page / WABA / phone ids); the app handler that maps the event sets it.
    """

    Status = WebhookEventStatus

    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    object = models.CharField(max_length=64, help_text="page, whatsapp_business_account, ...")
    field = models.CharField(max_length=64)
    entry_id = models.CharField(verbose_name="entry ID", max_length=64, blank=True, help_text="page id or WABA id")
    entry_time = models.BigIntegerField(null=True, blank=True)
    dedupe_key = models.CharField(max_length=255, help_text="Meta's id for this change")
    payload = models.JSONField(help_text="The change exactly as Meta sent it: {field, value}")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    result = models.CharField(max_length=255, blank=True, help_text="What the handlers did")
    error = models.TextField(blank=True, help_text="Why the event failed or was ignored")
    attempts = models.PositiveSmallIntegerField(default=0)
    received_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When a failed event is retried")
    processed_at = models.DateTimeField(null=True, blank=True)
    intake_id = models.CharField(max_length=32, blank=True, editable=False,
                                 help_text="The HTTP delivery that stored it: tells a bulk insert's new rows from redeliveries")

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["field", "dedupe_key"], name="webhookevent_unique_per_field"),
            models.CheckConstraint(
                condition=Q(status__in=WebhookEventStatus.values),
                name="webhookevent_status_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhookevent_status_next"),
            models.Index(fields=["account", "-received_at"], name="webhookevent_account_received"),
        ]

    def __str__(self) -> str:
        return f"{self.field} {self.dedupe_key} ({self.status})"

    @property
    def value(self) -> dict[str, Any]:
        value = (self.payload or {}).get("value")
        return value if isinstance(value, dict) else {}


class HandlerOutcomeStatus(models.TextChoices):
    PROCESSED = "processed"  # the handler did something (``result``)
    SKIPPED = "skipped"  # not its business (returned None)
    IGNORED = "ignored"  # IgnoreEvent: nothing of ours; ``process_webhook_events --status ignored`` re-runs it
    FAILED = "failed"  # RetryLater or an error (``error``)


class WebhookHandlerOutcome(models.Model):
    """What one handler made of one event. A retry runs only the handlers without a final outcome
    (failed ones, and new handlers), so a RetryLater from one never re-runs another that succeeded."""

    Status = HandlerOutcomeStatus

    FINAL = (Status.PROCESSED, Status.SKIPPED, Status.IGNORED)

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="outcomes")
    handler = models.CharField(max_length=255, help_text="module.qualname of the handler")
    status = models.CharField(max_length=16, choices=Status.choices)
    result = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["event_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "handler"], name="webhookoutcome_once_per_handler"),
            models.CheckConstraint(condition=Q(status__in=HandlerOutcomeStatus.values), name="webhookoutcome_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.handler} on {self.event_id}: {self.status}"
