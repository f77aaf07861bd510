"""The React hub's other pages in Chromium: a seller's leads (no marketing, no connect controls),
the lead's ad context, and the HSM page (rule toggle, a delivered send in the log)."""
from __future__ import annotations

import pytest
from django.urls import Resolver404, resolve
from django.utils import timezone
from playwright.sync_api import expect

from automation.models import AutomationRule, MessageSend, MessageTemplate, RuleStep
from tests.conftest import make_lead, make_user
from tests.e2e.conftest import save_screenshot, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def route_exists(path: str) -> bool:
    try:
        return resolve(path).url_name is not None and "not_found" not in resolve(path).func.__name__
    except Resolver404:
        return False


def test_bob_the_seller_lands_on_his_leads_and_sees_no_marketing_or_connect_controls(page, live_server, acme, alice, bob):
    sandra = make_user("sandra", acme, "seller")
    make_lead(acme, first_name="Bruno", last_name="Deboby", seller=bob, lead_source="meta_ctwa", meta_campaign_id="400002",
              meta_adset_id="410002", meta_ad_id="420002", meta_ad_headline="Promo noviembre", meta_ad_body="Escribinos y te asesoramos")
    make_lead(acme, first_name="Berta", last_name="Debobs", seller=bob, lead_source="organic")
    make_lead(acme, first_name="Sonia", last_name="Desandra", seller=sandra)

    sign_in(page, "bob")

    expect(page).to_have_url(f"{live_server.url}/hub/leads")
    expect(page.get_by_text("Tus leads asignados.")).to_be_visible()
    expect(page.locator("#leads-table tbody tr")).to_have_count(2)
    expect(page.get_by_role("link", name="Bruno Deboby")).to_be_visible()
    expect(page.get_by_text("Sonia Desandra")).to_have_count(0)
    expect(page.get_by_role("link", name="Marketing Hub")).to_have_count(0)
    expect(page.get_by_role("link", name="Automatización HSM")).to_have_count(0)
    save_screenshot(page, "hub_leads_seller")

    page.get_by_role("link", name="Bruno Deboby").click()
    card = page.get_by_test_id("adcontextcard-container")
    expect(card).to_contain_text("Click-to-WhatsApp")
    expect(card).to_contain_text("Promo noviembre")
    expect(card).to_contain_text("Escribinos y te asesoramos")
    expect(card).to_contain_text("400002")
    save_screenshot(page, "hub_lead_seller")

    page.goto("/hub/marketing")
    expect(page.get_by_text("Esta sección no está disponible para tu rol")).to_be_visible()
    expect(page.get_by_role("button", name="Conectar con Meta")).to_have_count(0)
    expect(page.get_by_role("button", name="Desconectar")).to_have_count(0)


@pytest.mark.skipif(not route_exists("/crm/marketing/automation/rules") or not route_exists("/crm/marketing/automation-logs"),
                    reason="the automation endpoints (issue 8) are not on this branch yet")
def test_alice_turns_a_rule_off_and_sees_a_delivered_send_in_the_log(page, live_server, acme, alice):
    template = MessageTemplate.objects.create(
        account=acme, meta_template_id="900001", meta_waba_id="400001", name="bienvenida_lead", language="es_AR",
        category="MARKETING", status="APPROVED",
        components=[{"type": "BODY", "text": "Hola {{1}}, gracias por tu consulta.", "example": {"body_text": [["Ana"]]}}],
    )
    rule = AutomationRule.objects.create(account=acme, name="Bienvenida a leads de Meta", trigger_type="lead_created",
                                         conditions={"lead_sources": ["meta_lead_ads"]})
    step = RuleStep.objects.create(account=acme, rule=rule, order=1, delay_minutes=0, template=template,
                                   variables={"1": "lead.first_name"})
    lead = make_lead(acme, first_name="Carla", last_name="Pérez", lead_source="meta_lead_ads")
    now = timezone.now()
    MessageSend.objects.create(account=acme, rule=rule, step=step, lead=lead, trigger_type="lead_created", trigger_key="event:1",
                               rule_name=rule.name, template_name=template.name, status="delivered", due_at=now,
                               sent_at=now, delivered_at=now)
    sign_in(page, "alice")
    page.get_by_role("link", name="Automatización HSM").click()

    item = page.locator("li.rule", has_text="Bienvenida a leads de Meta")
    expect(item).to_contain_text("Lead creado")
    expect(page.get_by_label("Vista previa de bienvenida_lead")).to_contain_text("Hola lead.first_name, gracias por tu consulta.")
    log = page.locator("#send-log")
    expect(log.locator("tbody tr", has_text="Carla Pérez")).to_contain_text("Entregado")
    toggle = item.get_by_role("switch")
    expect(toggle).to_be_checked()
    toggle.click()
    expect(item.get_by_text("Inactiva")).to_be_visible()
    save_screenshot(page, "hub_hsm")
    rule.refresh_from_db()
    assert rule.is_active is False
