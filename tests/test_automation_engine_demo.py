"""The automation demo seed: acme's channel, template and two rules, and a new Meta lead welcomed at once."""
from __future__ import annotations

from io import StringIO

from django.core.management import call_command

from automation.models import AutomationRule, MessageSend
from crm_marketing import services
from crm_marketing.models import Account
from tests.fixtures.automation import _no_second_guard  # noqa: F401


def test_the_automation_demo_seed_gives_acme_two_rules_and_a_new_meta_lead_gets_its_welcome_at_once(
        db, meta_sandbox, django_capture_on_commit_callbacks):
    call_command("seed_demo", stdout=StringIO())
    out = StringIO()
    call_command("seed_automation_demo", stdout=out)
    call_command("seed_automation_demo", stdout=StringIO())  # idempotent
    acme = Account.objects.get(slug="acme")

    assert out.getvalue() == "Automation demo ready for acme: channel 1300001, templates seguimiento_lead_v1, seguimiento_24h, 2 new rule(s).\n"
    assert sorted(AutomationRule.objects.values_list("name", "trigger_type", "no_reply_hours", "steps__template__name")) == [
        ("Bienvenida a leads de Meta", "lead_created", None, "seguimiento_lead_v1"),
        ("Seguimiento a las 24 h sin respuesta", "no_reply", 24, "seguimiento_24h")]
    assert not MessageSend.objects.exists()  # the seeded leads are history, not new leads

    with django_capture_on_commit_callbacks(execute=True):
        lead = services.create_lead(acme, first_name="Nueva", phone="+5491177770001", lead_source="meta_lead_ads",
                                    meta_ad_headline="Plan Pro")

    assert MessageSend.objects.values_list("lead_id", "rule_name", "status").get() == (lead.pk, "Bienvenida a leads de Meta", "sent")
    assert [m["to"] for m in meta_sandbox.sent_messages] == ["5491177770001"]
