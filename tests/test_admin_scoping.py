"""Django admin is scoped per account: staff see and edit only their accounts' rows."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from crm_marketing.demo import staff_group
from crm_marketing.models import Lead
from tests.conftest import make_lead

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(alice, mallory):
    group = staff_group()
    for user in (alice, mallory):
        user.groups.add(group)


def admin_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_alice_sees_only_acme_leads_in_the_admin(staff, alice, acme, globex):
    make_lead(acme, first_name="AcmeOnly")
    make_lead(globex, first_name="GlobexOnly")

    page = admin_client(alice).get("/admin/crm_marketing/lead/")

    assert page.status_code == 200
    assert b"AcmeOnly" in page.content
    assert b"GlobexOnly" not in page.content


def test_mallory_cannot_open_or_edit_an_acme_lead_in_the_admin(staff, mallory, acme):
    lead = make_lead(acme, first_name="AcmeOnly")
    client = admin_client(mallory)

    page = client.get(f"/admin/crm_marketing/lead/{lead.pk}/change/")
    post = client.post(f"/admin/crm_marketing/lead/{lead.pk}/change/", {"first_name": "Hacked", "account": lead.account_id})

    assert page.status_code == 302  # Django admin redirects a missing object to the index
    assert post.status_code == 302
    lead.refresh_from_db()
    assert lead.first_name == "AcmeOnly"


def test_the_account_choices_in_the_admin_form_are_only_alices(staff, alice, acme, globex):
    page = admin_client(alice).get("/admin/crm_marketing/lead/add/")

    choices = page.context["adminform"].form.fields["account"].queryset
    assert list(choices) == [acme]


def test_alice_edits_an_acme_lead_in_the_admin(staff, alice, acme):
    lead = make_lead(acme, first_name="Old", phone="+5491155550001")
    data = {
        "account": acme.pk, "first_name": "New", "last_name": "", "phone": "+5491155550001", "email": "", "status": "contacted",
        "lead_source": "manual", "meta_campaign_id": "", "meta_adset_id": "", "meta_ad_id": "", "meta_form_id": "",
        "meta_ad_headline": "", "meta_ad_body": "", "ctwa_clid": "", "external_ids": "{}", "seller": "",
        "created_at_0": "2026-11-01", "created_at_1": "10:00:00",
        "opportunities-TOTAL_FORMS": "0", "opportunities-INITIAL_FORMS": "0",
    }

    response = admin_client(alice).post(f"/admin/crm_marketing/lead/{lead.pk}/change/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    lead.refresh_from_db()
    assert (lead.first_name, lead.status) == ("New", "contacted")


def test_a_superuser_sees_every_account(acme, globex):
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    make_lead(acme, first_name="AcmeOnly")
    make_lead(globex, first_name="GlobexOnly")

    page = admin_client(root).get("/admin/crm_marketing/lead/")

    assert b"AcmeOnly" in page.content and b"GlobexOnly" in page.content
    assert Lead.objects.count() == 2
