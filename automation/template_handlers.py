"""Template webhooks (registered in AutomationConfig.ready()): status and quality updates from the WABA.

The entry id of a ``whatsapp_business_account`` change is the WABA id: the template is looked up
only among the accounts whose WhatsApp channel belongs to that WABA, never guessed.
"""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from automation.models import MessageTemplate
from automation.services.templates import refresh_rule_flags, rules_using
from crm_marketing.webhook_models import WebhookEvent
from crm_marketing.webhooks import IgnoreEvent
from meta_oauth.models import WhatsAppChannel

# Webhook events that are not a template status: REINSTATED means approved again; LOCKED and
# UNLOCKED only say whether the template may be edited.
EVENT_STATUS = {"REINSTATED": MessageTemplate.APPROVED, "LOCKED": None, "UNLOCKED": None}


def _templates_of(event: WebhookEvent) -> list[MessageTemplate]:
    template_id = str(event.value.get("message_template_id") or "")[:32]
    if not template_id:
        raise IgnoreEvent(f"{event.field} change without a message_template_id")
    account_ids = list(WhatsAppChannel.objects.filter(meta_waba_id=event.entry_id).values_list("account_id", flat=True).distinct())
    if not account_ids:
        raise IgnoreEvent(f"WABA {event.entry_id or '(none)'} belongs to no account of ours")
    templates = list(MessageTemplate.objects.select_for_update().filter(account_id__in=account_ids, meta_template_id=template_id)
                     .select_related("account").order_by("pk"))
    if not templates:
        raise IgnoreEvent(f"template {template_id} of WABA {event.entry_id} is not synced yet (the next sync brings it)")
    event.account = templates[0].account
    return templates


def handle_template_status_update(event: WebhookEvent) -> str:
    """Store the template's new status as Meta names it and flag or clear the rules that use it."""
    value = event.value
    name = str(value.get("event") or "").upper()[:32]
    if not name:
        raise IgnoreEvent("message_template_status_update without an event")
    with transaction.atomic():
        templates = _templates_of(event)
        status = EVENT_STATUS.get(name, name)
        if status is None:
            return f"template {templates[0].name}: {name} noted, status unchanged"
        now = timezone.now()
        for template in templates:
            fields = ["status"]
            if template.status != status:
                template.status_changed_at = now
                fields.append("status_changed_at")
            template.status = status
            if status == "REJECTED":
                template.rejected_reason = str(value.get("reason") or "")[:128]
                fields.append("rejected_reason")
            template.save(update_fields=fields)
        flagged, cleared = 0, 0
        for template in templates:
            f, c = refresh_rule_flags(template.account, rules=[r for r in rules_using([template])])
            flagged, cleared = flagged + f, cleared + c
    return f"template {templates[0].name} is {status}: {flagged} rule(s) flagged, {cleared} flag(s) cleared"


def handle_template_quality_update(event: WebhookEvent) -> str:
    value = event.value
    score = str(value.get("new_quality_score") or "")[:16]
    if not score:
        raise IgnoreEvent("message_template_quality_update without new_quality_score")
    with transaction.atomic():
        templates = _templates_of(event)
        MessageTemplate.objects.filter(pk__in=[t.pk for t in templates]).update(quality_score=score)
    return f"template {templates[0].name} quality {score}"


def handle_template_category_update(event: WebhookEvent) -> str:
    """Meta re-categorised the template (e.g. UTILITY -> MARKETING, which changes its price)."""
    category = str(event.value.get("new_category") or "")[:32]
    if not category:
        raise IgnoreEvent("template_category_update without new_category")
    with transaction.atomic():
        templates = _templates_of(event)
        MessageTemplate.objects.filter(pk__in=[t.pk for t in templates]).update(category=category)
    return f"template {templates[0].name} category {category}"
