"""A seller cannot probe his colleagues' leads through uniqueness errors or ids.

The design (crm_marketing.services.duplicate_phone): a phone is unique per account (webhooks and
replies find the lead by it), and a seller sees only the leads assigned to him. When bob enters a
phone that is on a lead he cannot see, he gets one neutral 409 (``contact_already_handled``): the same
words whether carla holds that lead or nobody does yet, nothing about the lead (no id, name, status or
seller), no lead is created or changed, and the attempt goes to the audit trail so a manager can assign
the contact. Only that the contact is in the account can be learnt, which a unique phone cannot hide
without giving bob a lead that is not his. Ids of other sellers' rows answer exactly like ids that do
not exist.
"""
from __future__ import annotations

import pytest
from django.apps import apps
from django.db import models

from crm_marketing.audit import SystemEvent
from crm_marketing.models import Lead, Opportunity, Sale
from tests.factories import api_client_for, make_lead, make_opportunity, make_sale, make_user

pytestmark = pytest.mark.django_db
HANDLED = "This contact is already handled in your account: your manager has been told and can assign it to you."
REFUSAL = {"success": False, "error": {"code": "contact_already_handled", "message": HANDLED, "fields": {"phone": [HANDLED]}}}
NO_SUCH_ID = 987654


@pytest.fixture
def carla(acme):
    return make_user("carla", acme, "seller")


@pytest.fixture
def carlas_lead(acme, carla):
    return make_lead(acme, first_name="Rosario", last_name="Paz", phone="+5491150000001", email="rosario@example.com",
                     status="qualified", seller=carla)


@pytest.fixture
def unassigned_lead(acme):
    return make_lead(acme, first_name="Nadia", phone="+5491150000002", email="nadia@example.com")


def lead_rows() -> list[tuple]:
    return list(Lead.objects.order_by("pk").values_list("pk", "phone", "seller_id", "first_name", "status"))


def test_bob_gets_one_neutral_refusal_whether_a_colleague_or_nobody_holds_the_phone(bob_api, acme, carlas_lead, unassigned_lead):
    before = lead_rows()

    answers = [bob_api.post("/crm/leads", {"first_name": "Probe", "phone": lead.phone}, format="json")
               for lead in (carlas_lead, unassigned_lead)]

    assert [(a.status_code, a.json()) for a in answers] == [(409, REFUSAL), (409, REFUSAL)]
    assert lead_rows() == before


def test_the_refusal_says_nothing_about_the_lead_it_met(bob_api, acme, carla, carlas_lead):
    body = bob_api.post("/crm/leads", {"first_name": "Probe", "phone": carlas_lead.phone}, format="json").content.decode()

    for secret in (str(carlas_lead.pk), "Rosario", "Paz", "rosario@example.com", "qualified", "carla", str(carla.pk)):
        assert secret not in body


def test_bob_moving_his_lead_to_a_taken_phone_gets_the_same_refusal_and_his_lead_is_unchanged(bob_api, acme, bob, carlas_lead):
    mine = make_lead(acme, first_name="Mío", phone="+5491150000009", seller=bob)

    response = bob_api.patch(f"/crm/leads/{mine.pk}", {"phone": carlas_lead.phone, "first_name": "Renamed"}, format="json")

    assert (response.status_code, response.json()) == (409, REFUSAL)
    mine.refresh_from_db()
    assert (mine.phone, mine.first_name) == ("+5491150000009", "Mío")


def test_each_refused_attempt_is_in_the_audit_trail_for_the_managers(bob_api, acme, bob, carlas_lead, unassigned_lead):
    for lead in (carlas_lead, unassigned_lead):
        bob_api.post("/crm/leads", {"first_name": "Probe", "phone": lead.phone}, format="json")

    assert list(SystemEvent.objects.filter(action="lead.duplicate_refused").order_by("id").values_list(
        "account__slug", "actor__username", "target_type", "target_id")) == [
        ("acme", "bob", "lead", str(carlas_lead.pk)), ("acme", "bob", "lead", str(unassigned_lead.pk))]


def test_bob_is_told_plainly_about_a_duplicate_of_his_own_lead(bob_api, acme, bob):
    mine = make_lead(acme, phone="+5491150000009", seller=bob)

    response = bob_api.post("/crm/leads", {"first_name": "Again", "phone": mine.phone}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"phone": ["A lead with this phone already exists in this account."]}


def test_managers_who_see_every_lead_still_get_the_plain_answer(alice_api, acme, carlas_lead):
    response = alice_api.post("/crm/leads", {"first_name": "Again", "phone": carlas_lead.phone}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"phone": ["A lead with this phone already exists in this account."]}
    assert not SystemEvent.objects.filter(action="lead.duplicate_refused").exists()


def test_bob_can_still_add_a_new_contact(bob_api, acme, bob, carlas_lead):
    response = bob_api.post("/crm/leads", {"first_name": "Nuevo", "phone": "+5491150000077"}, format="json")

    assert response.status_code == 201
    assert Lead.objects.get(phone="+5491150000077").seller == bob


# -- ids and filters ---------------------------------------------------------------------------------------------------
def same_answer(response_for_theirs, response_for_none, their_id) -> bool:
    """Both answers, once the id the caller himself sent is blanked out, are the same."""
    def shape(response):
        return response.status_code, response.content.decode().replace(str(their_id), "ID").replace(str(NO_SUCH_ID), "ID")
    return shape(response_for_theirs) == shape(response_for_none)


def test_ids_of_a_colleagues_rows_answer_like_ids_that_do_not_exist(bob_api, acme, bob, carla, carlas_lead):
    opportunity = make_opportunity(carlas_lead, title="Plan grande")
    sale = make_sale(carlas_lead, "100.00")
    mine = make_lead(acme, phone="+5491150000009", seller=bob)
    probes = {
        "read a lead": lambda pk: bob_api.get(f"/crm/leads/{pk}"),
        "change a lead": lambda pk: bob_api.patch(f"/crm/leads/{pk}", {"status": "lost"}, format="json"),
        "read an opportunity": lambda pk: bob_api.get(f"/crm/opportunities/{pk}"),
        "read a sale": lambda pk: bob_api.get(f"/crm/sales/{pk}"),
        "open an opportunity on a lead": lambda pk: bob_api.post("/crm/opportunities", {"lead": pk}, format="json"),
        "record a sale on a lead": lambda pk: bob_api.post("/crm/sales", {"lead": pk, "amount": "1.00"}, format="json"),
        "attach a sale to an opportunity": lambda pk: bob_api.post("/crm/sales", {"lead": mine.pk, "opportunity": pk, "amount": "1.00"},
                                                                   format="json"),
        "assign a lead to a user": lambda pk: bob_api.post("/crm/leads", {"first_name": "X", "phone": "+5491150000055", "seller": pk},
                                                           format="json"),
    }
    theirs = {"read a lead": carlas_lead.pk, "change a lead": carlas_lead.pk, "read an opportunity": opportunity.pk,
              "read a sale": sale.pk, "open an opportunity on a lead": carlas_lead.pk, "record a sale on a lead": carlas_lead.pk,
              "attach a sale to an opportunity": opportunity.pk, "assign a lead to a user": carla.pk}

    differing = [name for name, probe in probes.items() if not same_answer(probe(theirs[name]), probe(NO_SUCH_ID), theirs[name])]

    assert differing == []
    carlas_lead.refresh_from_db()
    assert carlas_lead.status == "qualified" and not Lead.objects.filter(phone="+5491150000055").exists()


def test_list_filters_find_a_colleagues_lead_no_more_than_a_missing_one(bob_api, acme, carla, carlas_lead):
    for params in ({"phone": carlas_lead.phone}, {"email": carlas_lead.email}, {"seller": carla.pk}):
        found = bob_api.get("/crm/leads", params).json()["data"]
        assert (found["total"], found["results"]) == (0, []), params


def test_a_second_sale_on_bobs_own_opportunity_is_refused_about_his_own_row_only(bob_api, acme, bob):
    mine = make_lead(acme, phone="+5491150000009", seller=bob)
    opportunity = make_opportunity(mine)
    make_sale(mine, "10.00", opportunity=opportunity)

    response = bob_api.post("/crm/sales", {"lead": mine.pk, "opportunity": opportunity.pk, "amount": "5.00"}, format="json")

    assert (response.status_code, response.json()["error"]["code"]) == (409, "duplicate_sale")


def test_these_are_the_unique_rules_a_seller_can_run_into():
    """Walks the unique constraints of the rows a seller writes (leads, opportunities, sales): each one
    has its probing test above. A new one needs its own."""
    found = set()
    for model in (Lead, Opportunity, Sale):
        found |= {c.name for c in model._meta.constraints if isinstance(c, models.UniqueConstraint)}
        found |= {f"{model.__name__}.{f.name}" for f in model._meta.fields if f.unique and not f.primary_key}
        found |= {f"{model.__name__}.{names}" for names in model._meta.unique_together}
    assert apps.is_installed("crm_marketing")
    assert found == {"lead_phone_unique_per_account", "sale_one_per_opportunity"}
