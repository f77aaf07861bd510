"""The admin refuses, as form errors, the absurd input the API refuses with a 400: never a 500, nothing saved."""
from __future__ import annotations

import pytest
from django.test import Client

from crm_marketing.demo import staff_group
from crm_marketing.models import Lead, LeadTouch, Opportunity, Sale
from tests.conftest import make_lead

pytestmark = pytest.mark.django_db

DEEP_JSON = '{"a": ' * 5000 + "1" + "}" * 5000


@pytest.fixture
def alice_admin(alice) -> Client:
    alice.groups.add(staff_group())
    client = Client()
    client.force_login(alice)
    return client


def lead_form(acme, **changes) -> dict:
    data = {
        "account": acme.pk, "first_name": "Ana", "last_name": "", "phone": "+5491155550001", "email": "", "status": "new",
        "lead_source": "manual", "meta_campaign_id": "", "meta_adset_id": "", "meta_ad_id": "", "meta_form_id": "",
        "meta_ad_headline": "", "meta_ad_body": "", "ctwa_clid": "", "external_ids": "{}", "seller": "",
        "created_at_0": "2026-11-01", "created_at_1": "10:00:00",
        "opportunities-TOTAL_FORMS": "0", "opportunities-INITIAL_FORMS": "0",
    }
    data.update(changes)
    return data


def form_errors(response) -> dict:
    assert response.status_code == 200, response  # the form again, not a redirect and not a 500
    return {name: list(messages) for name, messages in response.context["adminform"].form.errors.items()}


def test_a_well_formed_lead_is_added_in_the_admin(alice_admin, acme):
    response = alice_admin.post("/admin/crm_marketing/lead/add/", lead_form(acme, external_ids='{"crm_id": "77"}'))

    assert response.status_code == 302
    assert list(Lead.objects.values_list("first_name", "external_ids")) == [("Ana", {"crm_id": "77"})]


@pytest.mark.parametrize("created_on", ["0001-01-01", "9999-12-31", "1969-12-31"])
def test_a_lead_created_outside_the_api_date_range_is_a_form_error(alice_admin, acme, created_on):
    response = alice_admin.post("/admin/crm_marketing/lead/add/", lead_form(acme, created_at_0=created_on))

    assert form_errors(response) == {"created_at": ["Enter a moment between 1970-01-01 and 2999-12-31."]}
    assert not Lead.objects.exists()


@pytest.mark.parametrize("external_ids, message", [
    (DEEP_JSON, "Nested deeper than 32 levels."),
    ('{"a": "\\ud800"}', "A string holds a NUL character or an unpaired surrogate."),
    ('{"a": "\\u0000"}', "A string holds a NUL character or an unpaired surrogate."),
    ('{"a": "b\\u0000c"}', "A string holds a NUL character or an unpaired surrogate."),
    ('["not", "an", "object"]', "Must be an object of id names to values."),
])
def test_lead_external_ids_the_api_refuses_are_a_form_error(alice_admin, acme, external_ids, message):
    response = alice_admin.post("/admin/crm_marketing/lead/add/", lead_form(acme, external_ids=external_ids))

    assert form_errors(response) == {"external_ids": [message]}
    assert not Lead.objects.exists()


def test_an_existing_lead_keeps_its_external_ids_when_a_change_is_refused(alice_admin, acme):
    lead = make_lead(acme, first_name="Ana", phone="+5491155550001", external_ids={"crm_id": "1"})

    response = alice_admin.post(f"/admin/crm_marketing/lead/{lead.pk}/change/", lead_form(acme, external_ids='{"a": "\\ud800"}'))

    assert form_errors(response) == {"external_ids": ["A string holds a NUL character or an unpaired surrogate."]}
    assert Lead.objects.get(pk=lead.pk).external_ids == {"crm_id": "1"}


def test_a_lead_touch_cannot_be_added_by_hand_even_with_unstorable_details(alice_admin, acme):
    """Touches are written by Meta webhooks and syncs only: the admin refuses the add and stores nothing."""
    lead = make_lead(acme)

    response = alice_admin.post("/admin/crm_marketing/leadtouch/add/", {
        "account": acme.pk, "lead": lead.pk, "lead_source": "meta_ctwa", "meta_campaign_id": "", "meta_adset_id": "",
        "meta_ad_id": "", "meta_form_id": "", "external_id": "", "details": DEEP_JSON,
        "touched_at_0": "2026-11-01", "touched_at_1": "10:00:00"})

    assert response.status_code == 403
    assert not LeadTouch.objects.exists()


@pytest.mark.parametrize("closed_on", ["0001-01-01", "9999-12-31"])
def test_a_sale_closed_outside_the_api_date_range_is_a_form_error(alice_admin, acme, closed_on):
    lead = make_lead(acme)

    response = alice_admin.post("/admin/crm_marketing/sale/add/", {
        "account": acme.pk, "lead": lead.pk, "opportunity": "", "amount": "100.00", "currency": "USD", "status": "completed",
        "closed_at_0": closed_on, "closed_at_1": "10:00:00"})

    assert form_errors(response) == {"closed_at": ["Enter a moment between 1970-01-01 and 2999-12-31."]}
    assert not Sale.objects.exists()


def test_an_opportunity_created_in_year_one_is_a_form_error(alice_admin, acme):
    lead = make_lead(acme)

    response = alice_admin.post("/admin/crm_marketing/opportunity/add/", {
        "account": acme.pk, "lead": lead.pk, "title": "Plan", "stage": "new", "amount": "0", "currency": "USD", "seller": "",
        "created_at_0": "0001-01-01", "created_at_1": "00:00:00"})

    assert form_errors(response) == {"created_at": ["Enter a moment between 1970-01-01 and 2999-12-31."]}
    assert not Opportunity.objects.exists()
