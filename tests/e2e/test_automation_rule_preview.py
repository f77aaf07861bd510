"""In Chromium: alice opens a rule in the admin, picks a lead and reads each step in a WhatsApp bubble."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import expect

from tests.conftest import make_lead
from tests.e2e.conftest import save_screenshot, sign_in
from tests.fixtures.catalog import make_rule, make_template

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_alice_previews_a_rule_for_a_chosen_lead(page, acme, alice):
    alice.user_permissions.set(Permission.objects.filter(content_type__app_label="automation"))
    rule = make_rule(acme, make_template(acme), flagged_reason="Template seguimiento_lead_v1 is PAUSED")
    maria = make_lead(acme, first_name="María", meta_ad_headline="Plan Pro")
    make_lead(acme, first_name="Zoe", meta_ad_headline="Plan Basic")  # the newest: shown until María is chosen

    sign_in(page, "alice", path=f"/admin/login/?next=/admin/automation/automationrule/{rule.pk}/change/")
    expect(page.locator(".wa-header").first).to_have_text("¡Hola Zoe!")
    page.select_option("#preview_lead", value=str(maria.pk))
    with page.expect_navigation():
        page.locator("#wa-preview input[type=submit]").click()

    bubble = page.locator(".wa-bubble").first
    expect(bubble.locator(".wa-header")).to_have_text("¡Hola María!")
    expect(bubble.locator(".wa-body")).to_have_text("Gracias por tu interés en Plan Pro. ¿Querés que - te llame hoy?")
    expect(page.locator(".wa-button")).to_have_text(["Sí, llamame", "Ahora no"])
    expect(page.locator(".messagelist .warning")).to_have_text("This rule needs attention: Template seguimiento_lead_v1 is PAUSED.")
    assert bubble.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(217, 253, 211)"  # WhatsApp's green
    save_screenshot(page, "automation_rule_preview")
