"""WhatsApp message templates: the sync from the WABA, status updates, and the rule flags they raise.

Meta is the source of truth: ``status`` is stored exactly as Meta sends it (APPROVED, PAUSED,
IN_APPEAL, and whatever Meta adds next); only APPROVED is sendable. A template Meta stops
returning is kept and marked DELETED, because rule steps and past sends still point at it.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

from django.db import transaction
from django.db.models import Exists, OuterRef, Prefetch
from django.utils import timezone

from automation.models import AutomationRule, MessageTemplate, RuleStep
from automation.rendering import placeholders
from crm_marketing.audit import record_event
from crm_marketing.errors import NotConnected
from crm_marketing.graph import GraphClient
from crm_marketing.queueing import enqueue_after_commit
from crm_marketing.tenancy import Account
from meta_oauth.models import MetaConnection, WhatsAppChannel

log = logging.getLogger(__name__)

TEMPLATE_FIELDS = "id,name,language,status,category,components,quality_score,rejected_reason,parameter_format"
PAGE_SIZE = 100
MISSING_STATUS = "DELETED"  # what we store for a template Meta no longer lists
SYNC_TASK = "automation.tasks.sync_account_templates"
# The flags this module writes and may clear; anything else in flagged_reason is someone else's.
TEMPLATE_FLAG = re.compile(r"^Template .+ is [A-Z_]+$")


@dataclass
class SyncResult:
    account: str
    waba_id: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    marked_deleted: int = 0
    status_changes: list[str] = field(default_factory=list)
    rules_flagged: int = 0
    rules_cleared: int = 0

    @property
    def templates(self) -> int:
        return self.created + self.updated + self.unchanged

    def summary(self) -> str:
        text = (f"{self.account} WABA {self.waba_id}: {self.templates} template(s) ({self.created} new, {self.updated} updated, "
                f"{self.unchanged} unchanged), {self.marked_deleted} marked {MISSING_STATUS}, "
                f"{self.rules_flagged} rule(s) flagged, {self.rules_cleared} flag(s) cleared")
        if self.status_changes:
            text += "; " + ", ".join(self.status_changes)
        return text


def selected_channel(account: Account) -> WhatsAppChannel:
    """The WhatsApp number the account sends from: its WABA owns the templates."""
    channel = WhatsAppChannel.objects.filter(account=account, is_selected=True).first()
    if channel is None:
        raise NotConnected("No WhatsApp channel is selected for this account: choose one first.",
                           code="whatsapp_channel_not_selected")
    return channel


def _text(value: Any, limit: int) -> str:
    return ("" if value is None else str(value))[:limit]


def _parsed(row: dict[str, Any]) -> dict[str, Any] | None:
    """Our columns from one Graph template row; None for a row without an id (nothing to key it on)."""
    meta_id = _text(row.get("id"), 32)
    if not meta_id:
        return None
    quality = row.get("quality_score")
    score = quality.get("score") if isinstance(quality, dict) else quality
    reason = _text(row.get("rejected_reason"), 128)
    parameter_format = str(row.get("parameter_format") or "").upper()
    components = row.get("components")
    return {
        "name": _text(row.get("name"), 512),
        "language": _text(row.get("language"), 16),
        "category": _text(row.get("category"), 32),
        "status": _text(row.get("status"), 32) or "UNKNOWN",
        "quality_score": _text(score, 16),
        "rejected_reason": "" if reason == "NONE" else reason,
        "parameter_format": parameter_format if parameter_format in MessageTemplate.ParameterFormat.values
        else MessageTemplate.ParameterFormat.POSITIONAL,
        "components": components if isinstance(components, list) else [],
    }


def sync_templates(account: Account, *, client: GraphClient) -> SyncResult:
    """Upsert every template of the account's WABA (all pages), mark the vanished ones, refresh rule flags.

    Raises NotConnected without a selected channel, GraphError when Meta fails (nothing written)."""
    channel = selected_channel(account)
    waba_id = channel.meta_waba_id
    rows = client.get_all(f"{waba_id}/message_templates", {"fields": TEMPLATE_FIELDS, "limit": PAGE_SIZE})
    result = SyncResult(account.slug, waba_id)
    now = timezone.now()
    with transaction.atomic():
        existing = {t.meta_template_id: t for t in MessageTemplate.objects.select_for_update().filter(account=account)}
        seen: set[str] = set()
        for row in rows if isinstance(rows, list) else []:
            values = _parsed(row) if isinstance(row, dict) else None
            if values is None or str(row["id"]) in seen:
                continue
            meta_id = str(row["id"])[:32]
            seen.add(meta_id)
            template = existing.get(meta_id)
            if template is None:
                MessageTemplate.objects.create(account=account, meta_template_id=meta_id, meta_waba_id=waba_id,
                                               synced_at=now, status_changed_at=now, **values)
                result.created += 1
                continue
            _apply(template, values, waba_id=waba_id, now=now, result=result)
        for template in existing.values():
            if template.meta_waba_id == waba_id and template.meta_template_id not in seen and template.status != MISSING_STATUS:
                _apply(template, {"status": MISSING_STATUS}, waba_id=waba_id, now=now, result=result, counted=False)
                result.marked_deleted += 1
        result.rules_flagged, result.rules_cleared = refresh_rule_flags(account)
    log.info("template sync %s", result.summary())
    return result


def _apply(template: MessageTemplate, values: dict[str, Any], *, waba_id: str, now: dt.datetime, result: SyncResult,
           counted: bool = True) -> None:
    changed = [name for name, value in values.items() if getattr(template, name) != value]
    if template.meta_waba_id != waba_id:
        template.meta_waba_id = waba_id
        changed.append("meta_waba_id")
    if "status" in changed:
        result.status_changes.append(f"{template.name} {template.status} -> {values['status']}")
        template.status_changed_at = now
        changed.append("status_changed_at")
    for name, value in values.items():
        setattr(template, name, value)
    template.synced_at = now
    template.save(update_fields=[*changed, "synced_at"])
    if counted:
        if changed:
            result.updated += 1
        else:
            result.unchanged += 1


# -- rule flags ------------------------------------------------------------------------------------------------
def template_flag(rule: AutomationRule) -> str:
    """Why the rule cannot send as it stands ("Template X is PAUSED"), or "" when every template is APPROVED.

    Uses ``rule.steps.all()``: prefetch ``steps__template`` when calling this for many rules."""
    for step in sorted(rule.steps.all(), key=lambda s: s.order):
        if not step.template.is_approved:
            return f"Template {step.template.name} is {step.template.status}"
    return ""


def refresh_rule_flags(account: Account, *, rules: Iterable[AutomationRule] | None = None) -> tuple[int, int]:
    """Flag the active rules whose step templates are not APPROVED; clear the template flags that no
    longer hold. Returns (rules flagged, flags cleared). A flag someone else wrote is left alone."""
    if rules is None:
        steps = RuleStep.objects.select_related("template").order_by("order")
        rules = AutomationRule.objects.filter(account=account).prefetch_related(Prefetch("steps", queryset=steps))
    flagged = cleared = 0
    for rule in rules:
        reason = template_flag(rule)
        current = rule.flagged_reason
        ours = not current or bool(TEMPLATE_FLAG.match(current))
        if reason and rule.is_active and ours and current != reason:
            rule.flagged_reason, flagged = reason[:255], flagged + 1
        elif not reason and current and TEMPLATE_FLAG.match(current):
            rule.flagged_reason, cleared = "", cleared + 1
        else:
            continue
        AutomationRule.objects.filter(pk=rule.pk).update(flagged_reason=rule.flagged_reason)
    return flagged, cleared


def rules_using(templates: Iterable[MessageTemplate]) -> list[AutomationRule]:
    ids = [t.pk for t in templates]
    uses = RuleStep.objects.filter(rule=OuterRef("pk"), template_id__in=ids)
    steps = RuleStep.objects.select_related("template").order_by("order")
    return list(AutomationRule.objects.filter(Exists(uses)).prefetch_related(Prefetch("steps", queryset=steps)))


# -- on demand ---------------------------------------------------------------------------------------------------
def request_template_sync(account: Account, *, actor=None, request=None) -> str:
    """The hub's and the admin's "sync templates now": check the account can sync, audit, queue. Returns
    the django-q2 task name the caller can look the task up by."""
    selected_channel(account)
    connection = MetaConnection.objects.filter(account=account).first()
    if connection is None or not connection.is_usable:
        raise NotConnected("Meta is not connected for this account (or needs to be reconnected).")
    task_id = uuid.uuid4().hex
    with transaction.atomic():
        record_event("automation.templates.sync", account=account, actor=actor, target=account, request=request, task_id=task_id)
        enqueue_after_commit(SYNC_TASK, account.pk, task_name=task_id)  # a broker that is down: the 6-hourly sync
    return task_id


def syncable_accounts():
    """Accounts with a usable Meta connection and a selected WhatsApp channel (the schedule's targets)."""
    connected = MetaConnection.objects.filter(account=OuterRef("pk"), status=MetaConnection.Status.CONNECTED)
    channel = WhatsAppChannel.objects.filter(account=OuterRef("pk"), is_selected=True)
    return Account.objects.filter(Exists(connected), Exists(channel)).order_by("pk")


# -- read side --------------------------------------------------------------------------------------------------
def body_text(components: Any) -> str:
    for component in components if isinstance(components, list) else []:
        if isinstance(component, dict) and str(component.get("type") or "").upper() == "BODY":
            return str(component.get("text") or "")
    return ""


def variables_of(template: MessageTemplate) -> list[str]:
    return placeholders(template.components)
