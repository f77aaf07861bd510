"""The audit trail: one SystemEvent row per sensitive action (who, account, action, target)."""
from __future__ import annotations

from django.conf import settings
from django.db import models

from crm_marketing.ratelimits import client_ip


class SystemEvent(models.Model):
    account = models.ForeignKey("crm_marketing.Account", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(verbose_name="target ID", max_length=64, blank=True)
    ip = models.GenericIPAddressField(verbose_name="IP address", null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "-created_at"], name="sysevent_account_created")]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type}:{self.target_id}"


def record_event(action: str, *, account=None, actor=None, target=None, request=None, **details) -> SystemEvent:
    """Write one audit row. ``target`` is a model instance (its type and pk are kept)."""
    if request is not None and actor is None and getattr(request, "user", None) is not None and request.user.is_authenticated:
        actor = request.user
    return SystemEvent.objects.create(
        account=account,
        actor=actor,
        action=action,
        target_type=target._meta.model_name if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        ip=client_ip(request) if request is not None else None,
        details=details,
    )


def record_events(action: str, *, account, targets) -> list[SystemEvent]:
    """``record_event`` for several targets of one action by the system (no actor, no request): one insert."""
    return SystemEvent.objects.bulk_create([
        SystemEvent(account=account, action=action, target_type=target._meta.model_name, target_id=str(target.pk))
        for target in targets])
