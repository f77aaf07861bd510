"""manage.py seed_automation_demo: acme's WhatsApp channel, templates and two rules for the demo (idempotent).

Run by ``make demo`` after seed_demo. acme sends from the sandbox's phone number with the sandbox's
fixture token, so a lead created in admin (source Meta Lead Ads or Click-to-WhatsApp) gets its
welcome within seconds and the sandbox's status webhooks move it to read.
"""
from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from automation.models import AutomationRule, MessageTemplate, RuleStep
from crm_marketing.models import Account
from meta_oauth.models import MetaConnection, WhatsAppChannel

SANDBOX_TOKEN = "EAAsandboxFixtureToken10001"  # the sandbox fixture's long-lived token of user 10001
WABA_ID, PHONE_NUMBER_ID = "1200001", "1300001"
WELCOME = {
    "meta_template_id": "1100001", "name": "seguimiento_lead_v1", "language": "es", "category": "MARKETING",
    "status": "APPROVED", "quality_score": "GREEN", "components": [
        {"type": "HEADER", "format": "TEXT", "text": "¡Hola {{1}}!"},
        {"type": "BODY", "text": "Gracias por tu interés en {{2}}. ¿Querés que {{3}} te llame hoy?"},
        {"type": "FOOTER", "text": "Respondé STOP para no recibir más mensajes"},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Sí, llamame"}, {"type": "QUICK_REPLY", "text": "Ahora no"}]}]}
FOLLOW_UP = {
    "meta_template_id": "1100005", "name": "seguimiento_24h", "language": "es", "category": "UTILITY",
    "status": "APPROVED", "quality_score": "GREEN", "components": [
        {"type": "BODY", "text": "Hola {{1}}, ¿pudiste ver la propuesta de {{2}}?"}]}
TEMPLATES = {"welcome": WELCOME, "follow_up": FOLLOW_UP}  # as the sandbox's WABA 1200001 holds them
RULES = [
    {"name": "Bienvenida a leads de Meta", "trigger_type": "lead_created", "template": "welcome",
     "conditions": {"lead_sources": ["meta_lead_ads", "meta_ctwa"]}, "delay_minutes": 0,
     "variables": {"1": "lead.first_name", "2": "lead.ad_headline", "3": "account.name"}},
    {"name": "Seguimiento a las 24 h sin respuesta", "trigger_type": "no_reply", "no_reply_hours": 24, "template": "follow_up",
     "conditions": {"lead_sources": ["meta_lead_ads", "meta_ctwa"]}, "delay_minutes": 0,
     "variables": {"1": "lead.first_name", "2": "account.name"}},
]
ADMIN_MODELS = ["messagesend", "messagetemplate", "automationrule", "rulestep"]


class Command(BaseCommand):
    help = "Seed acme's WhatsApp channel, the two approved templates and the demo's two automation rules."

    def add_arguments(self, parser):
        parser.add_argument("--account", default="acme")

    @transaction.atomic
    def handle(self, *args, account: str, **options):
        target = Account.objects.filter(slug=account).first()
        if target is None:
            raise CommandError(f"No account {account!r}: run seed_demo first.")
        connection = MetaConnection.objects.filter(account=target).first()
        if connection is None:
            connection = MetaConnection(account=target, status=MetaConnection.Status.CONNECTED, meta_user_id="10001",
                                        meta_user_name="Sandbox manager", connected_at=timezone.now(),
                                        scopes=["whatsapp_business_management", "whatsapp_business_messaging"])
            connection.set_token(SANDBOX_TOKEN)
            connection.save()
        WhatsAppChannel.objects.get_or_create(
            meta_phone_number_id=PHONE_NUMBER_ID,
            defaults={"account": target, "meta_waba_id": WABA_ID, "display_phone_number": "5491140000000",
                      "verified_name": target.name, "quality_rating": "GREEN", "messaging_limit_tier": "TIER_1K",
                      "throughput_mps": 80, "is_selected": True, "subscribed_at": timezone.now()})
        templates = {key: MessageTemplate.objects.update_or_create(
            account=target, meta_template_id=spec["meta_template_id"],
            defaults={**{k: v for k, v in spec.items() if k != "meta_template_id"}, "meta_waba_id": WABA_ID})[0]
            for key, spec in TEMPLATES.items()}
        rules = 0
        for spec in RULES:
            if AutomationRule.objects.filter(account=target, name=spec["name"]).exists():
                continue
            rule = AutomationRule.objects.create(
                account=target, name=spec["name"], trigger_type=spec["trigger_type"], conditions=spec["conditions"],
                no_reply_hours=spec.get("no_reply_hours"), exit_on_reply=True)
            RuleStep.objects.create(account=target, rule=rule, order=1, delay_minutes=spec["delay_minutes"],
                                    template=templates[spec["template"]], variables=spec["variables"])
            rules += 1
        group = Group.objects.filter(name="CRM staff").first()
        if group is not None:  # the demo's staff see the send log and the rules in admin
            group.permissions.add(*Permission.objects.filter(content_type__app_label="automation",
                                                             content_type__model__in=ADMIN_MODELS))
        self.stdout.write(f"Automation demo ready for {target.slug}: channel {PHONE_NUMBER_ID}, "
                          f"templates {', '.join(t.name for t in templates.values())}, {rules} new rule(s).")
