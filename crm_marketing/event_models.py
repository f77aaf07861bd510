"""The outbox of domain events and the outcome of each (event, subscriber) delivery.

``events.publish`` writes an ``OutboxEvent`` in the writer's transaction, so the event exists iff
the change committed. Delivery writes one ``EventDelivery`` per subscriber: the unique
(event, subscriber) row is what makes a delivered subscriber never run again and lets a failing one
be retried alone.
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from crm_marketing.tenancy import Account


class OutboxEvent(models.Model):
    """One published domain event; ``delivered_at`` is set once every known subscriber got it."""

    name = models.CharField(max_length=64)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When the sweep looks at it next (empty: delivered, or every retry used up)")
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "domain event"
        indexes = [
            # The sweep's read: undelivered events whose time has come. Delivered ones are not in it.
            models.Index(fields=["next_attempt_at"], condition=Q(delivered_at__isnull=True), name="outboxevent_due"),
            models.Index(fields=["account", "-created_at"], name="outboxevent_account_created"),
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk}"


class EventDelivery(models.Model):
    """The outcome of one subscriber on one event. A worker claims it with one conditional update
    (pending/failed-and-due/running-past-its-lease -> running, with a fresh ``claim_token``)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DELIVERED = "delivered"
        FAILED = "failed"

    event = models.ForeignKey(OutboxEvent, on_delete=models.CASCADE, related_name="deliveries")
    subscriber = models.CharField(max_length=255, help_text="module.qualname of the handler")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When a failed delivery is retried (empty: given up)")
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["event_id", "id"]
        verbose_name_plural = "event deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "subscriber"], name="eventdelivery_once_per_subscriber"),
            models.CheckConstraint(condition=Q(status__in=["pending", "running", "delivered", "failed"]), name="eventdelivery_status_valid"),
            models.CheckConstraint(condition=~Q(status="delivered") | Q(delivered_at__isnull=False), name="eventdelivery_delivered_has_time"),
        ]

    def __str__(self) -> str:
        return f"{self.subscriber} on event {self.event_id} ({self.status})"
