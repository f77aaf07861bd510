"""The engine's own bookkeeping rows (imported by automation.models so Django sees them)."""
from __future__ import annotations

from django.db import models
from django.utils import timezone


class ThroughputSlot(models.Model):
    """The database limiter's shared counter: one row per (key, bucket).

    ``mps:{phone_number_id}`` rows count sends in one epoch second (``bucket``); ``queue:{phone}``
    rows (bucket 0) hold the number's queue clock in ``expires_epoch`` (when its next new send's turn
    is); ``pair:{phone}:{recipient}`` rows (bucket 0) hold the time a recipient may get the next
    message. Used only when no Redis is configured (limiter_backends.py)."""

    key = models.CharField(max_length=160)
    bucket = models.BigIntegerField()
    hits = models.PositiveIntegerField(default=0)
    expires_epoch = models.FloatField()

    class Meta:
        app_label = "automation"
        constraints = [models.UniqueConstraint(fields=["key", "bucket"], name="throughputslot_key_bucket_unique")]
        indexes = [models.Index(fields=["expires_epoch"], name="throughputslot_expires")]


class EnginePass(models.Model):
    """One run of the send pass (a heartbeat): the stats' ``engine`` figure reads the latest ones."""

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(default=True)
    claimed = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    summary = models.CharField(max_length=255, blank=True)

    class Meta:
        app_label = "automation"
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"pass at {self.started_at:%Y-%m-%d %H:%M:%S} ({'ok' if self.ok else 'failed'}): {self.summary}"
