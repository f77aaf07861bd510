"""Every status-like column holds one of its TextChoices values, enforced by the database itself:
an ``update()`` (which skips model validation) or raw SQL cannot store anything else."""
from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from crm_marketing.models import Lead, LeadTouch, Membership, Opportunity, Sale, WebhookEvent
from marketing.models import AdAccount, SyncRun
from meta_oauth.models import MetaConnection
from tests.conftest import make_lead, make_opportunity, make_sale

pytestmark = pytest.mark.django_db


def refused(queryset, **values) -> bool:
    try:
        with transaction.atomic():
            queryset.update(**values)
    except IntegrityError:
        return True
    return False


@pytest.fixture
def sync_run(acme) -> SyncRun:
    ad_account = AdAccount.objects.create(account=acme, meta_ad_account_id="act_300001", name="Acme - Leads AR", currency="ARS")
    return SyncRun.objects.create(account=acme, ad_account=ad_account, kind=SyncRun.Kind.INSIGHTS, status=SyncRun.Status.SUCCEEDED)


@pytest.fixture
def acme_connection(acme) -> MetaConnection:
    connection = MetaConnection(account=acme, status=MetaConnection.Status.CONNECTED, meta_user_id="10001")
    connection.set_token("sandbox-token")
    connection.save()
    return connection


def test_a_sync_run_with_an_unknown_status_or_kind_is_refused(sync_run):
    runs = SyncRun.objects.filter(pk=sync_run.pk)

    assert refused(runs, status="done")
    assert refused(runs, kind="everything")
    assert [refused(runs, status=status) for status in SyncRun.Status.values] == [False] * len(SyncRun.Status.values)
    assert [refused(runs, kind=kind) for kind in SyncRun.Kind.values] == [False] * len(SyncRun.Kind.values)
    assert SyncRun.objects.values_list("kind", "status").get() == (SyncRun.Kind.values[-1], SyncRun.Status.values[-1])


def test_a_meta_connection_with_an_unknown_status_is_refused(acme_connection):
    connections = MetaConnection.objects.filter(pk=acme_connection.pk)

    assert refused(connections, status="expired")
    assert not refused(connections, status=MetaConnection.Status.NEEDS_RECONNECT)
    assert MetaConnection.objects.get().status == "needs_reconnect"


def test_the_crm_columns_refuse_a_value_outside_their_choices(acme, alice):
    lead = make_lead(acme)
    opportunity = make_opportunity(lead)
    sale = make_sale(lead, "100.00")
    event = WebhookEvent.objects.create(object="page", field="leadgen", dedupe_key="444001", payload={"field": "leadgen"})

    assert refused(Lead.objects.filter(pk=lead.pk), status="hot")
    assert refused(Lead.objects.filter(pk=lead.pk), lead_source="tiktok")
    assert refused(Opportunity.objects.filter(pk=opportunity.pk), stage="maybe")
    assert refused(Sale.objects.filter(pk=sale.pk), status="pending")
    assert refused(Membership.objects.filter(user=alice), role="owner")
    assert refused(WebhookEvent.objects.filter(pk=event.pk), status="lost")
    assert (Lead.objects.values_list("status", "lead_source").get(), Opportunity.objects.get().stage, Sale.objects.get().status,
            Membership.objects.get(user=alice).role, WebhookEvent.objects.get().status) == (
        ("new", "manual"), "new", "completed", "ceo", "received")


def test_a_touch_or_a_sales_copied_attribution_names_a_known_lead_source(acme):
    lead = make_lead(acme, lead_source=Lead.Source.META_CTWA)
    touch = LeadTouch.objects.create(account=acme, lead=lead, lead_source=Lead.Source.META_CTWA, external_id="wamid.1")
    sale = make_sale(lead, "100.00")

    assert refused(LeadTouch.objects.filter(pk=touch.pk), lead_source="whatsapp")
    assert refused(Sale.objects.filter(pk=sale.pk), lead_source="whatsapp")
    assert not refused(Sale.objects.filter(pk=sale.pk), lead_source="")  # blank stays allowed: the empty default before the copy
    assert (LeadTouch.objects.get().lead_source, Sale.objects.get().lead_source) == ("meta_ctwa", "")
