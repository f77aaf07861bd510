"""Django admin is scoped per account: staff see and edit only their accounts' rows."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from crm_marketing.demo import staff_group
from crm_marketing.models import Lead, Membership, Opportunity
from tests.conftest import make_lead, make_opportunity, make_user

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


def test_alice_a_member_of_one_account_finds_it_already_chosen_on_the_add_form(staff, alice, acme, globex):
    field = admin_client(alice).get("/admin/crm_marketing/lead/add/").context["adminform"].form.fields["account"]

    assert field.initial == acme.pk
    assert [label for _, label in field.choices] == ["Acme"]  # no empty "---------" choice to fall into


def test_a_member_of_two_accounts_still_picks_one(staff, alice, acme, globex):
    Membership.objects.create(user=alice, account=globex, role="ceo")

    field = admin_client(alice).get("/admin/crm_marketing/lead/add/").context["adminform"].form.fields["account"]

    assert field.initial is None
    assert len(list(field.choices)) == 3  # the empty choice, acme and globex


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
    assert (lead.first_name, lead.status, lead.status_changed_by) == ("New", "contacted", alice)  # through the service
    assert lead.status_changed_at is not None


def test_a_superuser_sees_every_account(acme, globex):
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    make_lead(acme, first_name="AcmeOnly")
    make_lead(globex, first_name="GlobexOnly")

    page = admin_client(root).get("/admin/crm_marketing/lead/")

    assert b"AcmeOnly" in page.content and b"GlobexOnly" in page.content
    assert Lead.objects.count() == 2


def test_a_raw_id_field_does_not_label_another_accounts_lead(staff, alice, acme, globex):
    theirs = make_lead(globex, first_name="GlobexOnly")
    mine = make_lead(acme, first_name="AcmeOnly")
    client = admin_client(alice)

    foreign = client.get(f"/admin/crm_marketing/opportunity/add/?lead={theirs.pk}")
    own = client.get(f"/admin/crm_marketing/sale/add/?lead={mine.pk}")

    assert foreign.status_code == 200 and b"GlobexOnly" not in foreign.content
    assert b"AcmeOnly" in own.content


def test_bob_the_seller_gets_no_rows_in_the_admin_and_cannot_promote_himself(staff, bob, acme):
    bob.groups.add(staff_group())
    make_lead(acme, first_name="AcmeOnly")
    membership = Membership.objects.get(user=bob)
    client = admin_client(bob)

    leads = client.get("/admin/crm_marketing/lead/")
    promote = client.post(f"/admin/crm_marketing/membership/{membership.pk}/change/", {"user": bob.pk, "account": acme.pk, "role": "ceo"})
    rename = client.post(f"/admin/crm_marketing/account/{acme.pk}/change/", {"name": "Pwned", "slug": "acme", "currency": "USD", "timezone": "UTC"})

    # A seller holds no role that sees the account's rows here: the pages are refused, not shown empty.
    assert leads.status_code == 403 and b"AcmeOnly" not in leads.content
    assert promote.status_code == rename.status_code == 403
    membership.refresh_from_db()
    acme.refresh_from_db()
    assert (membership.role, acme.name) == ("seller", "Acme")


def test_a_marketing_member_sees_the_leads_but_not_the_memberships(staff, acme):
    maria = make_user("maria", acme, "marketing", is_staff=True)
    maria.groups.add(staff_group())
    make_lead(acme, first_name="AcmeOnly")
    client = admin_client(maria)

    leads = client.get("/admin/crm_marketing/lead/")
    memberships = client.get("/admin/crm_marketing/membership/")

    assert b"AcmeOnly" in leads.content
    assert memberships.status_code == 403  # roles are the managers'; not an empty list with an Add button


def test_an_opportunity_cannot_be_tied_to_a_lead_of_the_members_other_account(staff, alice, acme, globex):
    Membership.objects.create(user=alice, account=globex, role="ceo")
    globex_lead = make_lead(globex, first_name="GlobexOnly")

    response = admin_client(alice).post("/admin/crm_marketing/opportunity/add/", {
        "account": acme.pk, "lead": globex_lead.pk, "title": "Cross", "stage": "new", "amount": "5", "currency": "USD",
        "seller": "", "created_at_0": "2026-11-01", "created_at_1": "10:00:00",
    })

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"lead": ["Belongs to another account than this row."]}
    assert not Opportunity.objects.exists()


def test_the_opportunities_on_the_lead_page_are_read_only_so_a_save_never_fails(staff, alice, acme):
    lead = make_lead(acme, first_name="Old", phone="+5491155550001")
    make_opportunity(lead, title="Existing", stage="proposal")
    data = {
        "account": acme.pk, "first_name": "New", "last_name": "", "phone": "+5491155550001", "email": "", "status": "new",
        "lead_source": "manual", "meta_campaign_id": "", "meta_adset_id": "", "meta_ad_id": "", "meta_form_id": "",
        "meta_ad_headline": "", "meta_ad_body": "", "ctwa_clid": "", "external_ids": "{}", "seller": "",
        "created_at_0": "2026-11-01", "created_at_1": "10:00:00",
        "opportunities-TOTAL_FORMS": "2", "opportunities-INITIAL_FORMS": "1",
        "opportunities-1-title": "Sneaked in", "opportunities-1-stage": "won", "opportunities-1-amount": "10", "opportunities-1-currency": "USD",
    }

    response = admin_client(alice).post(f"/admin/crm_marketing/lead/{lead.pk}/change/", data)

    assert response.status_code == 302
    assert list(Opportunity.objects.values_list("title", "stage")) == [("Existing", "proposal")]
    assert Lead.objects.get(pk=lead.pk).first_name == "New"


def test_the_audit_trail_is_for_ceo_and_admin_only(staff, alice, acme):
    from crm_marketing.audit import record_event

    maria = make_user("maria", acme, "marketing", is_staff=True)
    maria.groups.add(staff_group())
    record_event("meta.connect", account=acme, actor=alice)

    as_maria = admin_client(maria).get("/admin/crm_marketing/systemevent/")
    as_alice = admin_client(alice).get("/admin/crm_marketing/systemevent/")

    assert (as_maria.status_code, as_alice.context["cl"].result_count) == (403, 1)


def opportunity_form(opportunity, **changes) -> dict:
    data = {"account": opportunity.account_id, "lead": opportunity.lead_id, "title": opportunity.title, "stage": opportunity.stage,
            "amount": str(opportunity.amount), "currency": opportunity.currency, "seller": "",
            "created_at_0": "2026-11-01", "created_at_1": "10:00:00"}
    data.update(changes)
    return data


def test_closing_an_opportunity_as_won_in_the_admin_records_the_sale_like_the_api(staff, alice, acme):
    from crm_marketing.models import Sale, SystemEvent
    from tests.conftest import make_opportunity

    opportunity = make_opportunity(make_lead(acme), title="Plan Pro", stage="proposal")

    response = admin_client(alice).post(f"/admin/crm_marketing/opportunity/{opportunity.pk}/change/",
                                        opportunity_form(opportunity, stage="won", amount="900.00"))

    assert response.status_code == 302
    opportunity.refresh_from_db()
    assert (opportunity.stage, opportunity.stage_changed_by) == ("won", alice)
    assert opportunity.closed_at is not None
    sale = Sale.objects.get()
    assert (sale.opportunity, sale.amount, sale.status) == (opportunity, Decimal("900.00"), "completed")
    assert SystemEvent.objects.filter(action="opportunity.update", actor=alice).exists()


def test_the_admin_refuses_to_reopen_a_lost_opportunity_and_changes_nothing(staff, alice, acme):
    from tests.conftest import make_opportunity

    opportunity = make_opportunity(make_lead(acme), title="Plan Pro", stage="lost")

    response = admin_client(alice).post(f"/admin/crm_marketing/opportunity/{opportunity.pk}/change/",
                                        opportunity_form(opportunity, stage="proposal"))

    assert response.status_code == 200  # the form again, with the error
    assert "already lost" in str(response.context["adminform"].form.non_field_errors())
    opportunity.refresh_from_db()
    assert opportunity.stage == "lost"
