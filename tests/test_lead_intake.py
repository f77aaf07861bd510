"""Many Lead Ads leads at once (marketing.services.lead_intake): the new ones are created together, with
what one by one would write for each, and a batch that meets known people or repeats itself ends as one by
one would have ended it."""
from __future__ import annotations

import datetime as dt
import threading
import time
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm_marketing.audit import SystemEvent
from crm_marketing.event_models import OutboxEvent
from crm_marketing.models import Lead, LeadTouch, WebhookEvent
from marketing.models import RollupDirtyCell
from marketing.services import attribution, lead_intake
from tests.conftest import make_lead
from tests.fixtures.webhooks import acme_meta, post_signed  # noqa: F401
from tests.test_leadgen_batch import one_delivery
from tests.test_stats import data_of

pytestmark = pytest.mark.django_db
NOW = timezone.now().replace(microsecond=0)


def form_fill(leadgen_id: str, *, name: str, phone: str = "", email: str = "", minutes_ago: int = 5,
              campaign: str = "400001") -> attribution.Touch:
    """A Lead Ads lead as GET /{leadgen_id} gives it (lead.json), as a touch."""
    fields = [{"name": "full_name", "values": [name]}]
    fields += [{"name": "phone_number", "values": [phone]}] if phone else []
    fields += [{"name": "email", "values": [email]}] if email else []
    created = (NOW - dt.timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    return attribution.touch_from_lead({"id": leadgen_id, "created_time": created, "campaign_id": campaign, "adset_id": "500001",
                                        "ad_id": "700001", "form_id": "900001", "field_data": fields})


def record_all(account, touches: list[attribution.Touch]) -> dict[int, attribution.TouchResult]:
    """What the leadgen handler does with a batch: the new leads together, then the others one by one."""
    by_key = dict(enumerate(touches))
    created = lead_intake.record_new_touches(account, by_key)
    return {**created, **{n: attribution.record_touch(account, t) for n, t in by_key.items() if n not in created}}


def outcome(account) -> list[tuple]:
    """Each lead as the hub and the admin show it, with its touches (what a seller would compare)."""
    return sorted((lead.first_name, lead.last_name, lead.phone, lead.email, lead.lead_source, lead.meta_campaign_id,
                   lead.external_ids.get("meta_leadgen_id"), sorted(lead.touches.values_list("external_id", flat=True)))
                  for lead in Lead.objects.filter(account=account))


def test_forty_new_form_fills_become_forty_leads_each_with_its_touch_audit_entry_event_and_rollup_mark(acme):
    fills = [form_fill(str(820000 + n), name=f"Lead {n}", phone=f"+5491177{n:06d}", email=f"lead{n}@example.com") for n in range(40)]

    results = lead_intake.record_new_touches(acme, dict(enumerate(fills)))

    leads = Lead.objects.filter(account=acme)
    assert sorted(results) == list(range(40)) and all(r.lead_created and r.touch_created for r in results.values())
    assert leads.count() == 40 and LeadTouch.objects.filter(account=acme).count() == 40
    assert {lead.phone: lead.meta_campaign_id for lead in leads} == {f.phone: "400001" for f in fills}
    assert sorted(int(pk) for pk in SystemEvent.objects.filter(action="lead.create").values_list("target_id", flat=True)) == \
        sorted(leads.values_list("pk", flat=True))
    assert sorted(e.payload["lead_id"] for e in OutboxEvent.objects.filter(name="lead_created")) == sorted(leads.values_list("pk", flat=True))
    today = timezone.localtime(NOW - dt.timedelta(minutes=5), ZoneInfo(acme.timezone)).date()
    assert list(RollupDirtyCell.objects.filter(account=acme, kind="crm").values_list("day", flat=True).distinct()) == [today]


def test_a_batch_takes_the_same_number_of_statements_for_ten_leads_as_for_forty(acme):
    def statements(first: int, count: int) -> int:
        fills = {n: form_fill(str(first + n), name=f"Lead {n}", phone=f"+54911{first + n:08d}") for n in range(count)}
        with CaptureQueriesContext(connection) as queries:
            assert len(lead_intake.record_new_touches(acme, fills)) == count
        return len(queries)

    assert statements(830000, 10) == statements(840000, 40) <= 12


def test_the_stats_count_a_batch_of_new_leads_at_once(acme, alice_api):
    lead_intake.record_new_touches(acme, {n: form_fill(str(850000 + n), name=f"L{n}", phone=f"+5491188{n:06d}") for n in range(5)})

    assert data_of(alice_api.get("/crm/marketing/stats?time_range=7d"))["leads"] == 5


def test_a_batch_that_repeats_itself_and_meets_known_people_ends_as_one_by_one_would(acme, globex):
    for account in (acme, globex):  # the same people known to both accounts
        make_lead(account, first_name="Ana", phone="+5491100000001", lead_source="manual")
        make_lead(account, first_name="Bea", phone=None, email="Bea.Lopez@Example.COM", lead_source="manual")
        make_lead(account, first_name="José", phone=None, email="José@Example.com", lead_source="manual")
        attribution.record_touch(account, form_fill("860001", name="Carla Ruiz", phone="+5491100000003"))
    batch = [
        form_fill("860010", name="Dario Paz", phone="+5491100000010", email="dario@example.com"),  # new
        form_fill("860011", name="Dario P", phone="+5491100000010", minutes_ago=1, campaign="400002"),  # his phone again, later
        form_fill("860019", name="Dario", phone="+5491100000010", minutes_ago=9, campaign="400003"),  # and earlier
        form_fill("860012", name="Ana Sosa", phone="+5491100000001"),  # Ana's phone
        form_fill("860013", name="Beatriz Lopez", email="bea.lopez@example.com"),  # Bea's email, other case
        form_fill("860001", name="Carla Ruiz", phone="+5491100000003"),  # Meta delivered Carla's lead again
        form_fill("860014", name="Eva Gil", email="dario@example.com"),  # Dario's email, from the same batch
        form_fill("860015", name="Fede Rio"),  # neither phone nor email
        form_fill("860016", name="José Paz", email="josé@example.com"),  # José's, as the database compares it
        form_fill("860017", name="First Writer", email="ſam@example.com"),  # UPPER() may fold it onto the next one's
        form_fill("860018", name="Second Writer", email="sam@example.com"),
    ]

    results = record_all(acme, batch)
    one_by_one = [attribution.record_touch(globex, touch) for touch in batch]  # globex records them one at a time

    assert outcome(acme) == outcome(globex)
    assert [results[n].lead_created for n in range(len(batch))] == [r.lead_created for r in one_by_one]
    assert {0, 7} <= {n for n, r in results.items() if r.lead_created}  # the two new ones, together
    assert Lead.objects.get(account=acme, phone="+5491100000010").meta_campaign_id == "400002"  # his last touch's
    assert Lead.objects.filter(account=acme).count() == Lead.objects.filter(account=globex).count()


def test_a_single_new_lead_and_a_batch_of_known_ones_are_left_to_one_by_one(acme):
    make_lead(acme, first_name="Ana", phone="+5491100000001", lead_source="manual")

    alone = lead_intake.record_new_touches(acme, {0: form_fill("870001", name="Solo", phone="+5491100000020")})
    known = lead_intake.record_new_touches(acme, {0: form_fill("870002", name="Ana", phone="+5491100000001"),
                                                  1: form_fill("870003", name="Ana S", phone="+5491100000001")})

    assert alone == {} and known == {} and Lead.objects.filter(account=acme).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_phone_a_seller_saves_while_the_batch_is_written_sends_the_batch_one_by_one_and_loses_nothing(acme, caplog):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers: no other writer can commit between the batch's check and its insert")
    typed, committed = threading.Event(), threading.Event()

    def seller_saves_the_phone() -> None:
        with transaction.atomic():
            make_lead(acme, first_name="Typed by Bob", phone="+5491100000031", lead_source="manual")
            typed.set()
            time.sleep(1)  # the batch has checked the phones by now and waits on this row's unique key
        committed.set()
        connection.close()

    seller = threading.Thread(target=seller_saves_the_phone)
    seller.start()
    typed.wait(10)
    batch = [form_fill("880001", name="Gala Paz", phone="+5491100000030"),
             form_fill("880002", name="Hugo Lee", phone="+5491100000031")]
    results = record_all(acme, batch)
    seller.join()

    assert committed.is_set()
    assert "2 new leads for acme recorded one by one: A lead with this phone already exists" in caplog.text
    assert sorted((r.lead.first_name, r.lead_created) for r in results.values()) == [("Gala", True), ("Typed by Bob", False)]
    assert LeadTouch.objects.filter(account=acme).count() == 2 and Lead.objects.filter(account=acme).count() == 2


def test_forty_form_fills_in_one_delivery_are_forty_leads_and_forty_processed_events(
        client, acme, acme_meta, meta_sandbox, django_capture_on_commit_callbacks):
    lead_ids = [meta_sandbox.add_lead("900001", "700001", phone=f"+54911444{n:05d}") for n in range(40)]
    lead_ids.insert(3, lead_ids[2])  # Meta sent one change twice

    with django_capture_on_commit_callbacks(execute=True):
        answer = post_signed(client, one_delivery(*[(lead_id, "900001", "700001") for lead_id in lead_ids]))

    assert answer.status_code == 200
    assert Lead.objects.filter(account=acme, lead_source="meta_lead_ads", meta_campaign_id="400001").count() == 40
    assert LeadTouch.objects.filter(account=acme).count() == 40


def test_a_lead_the_batch_cannot_take_fails_alone_and_the_others_of_the_delivery_are_recorded(
        client, acme, acme_meta, meta_sandbox, django_capture_on_commit_callbacks):
    lead_ids = [meta_sandbox.add_lead("900001", "700001", phone=f"+54911333{n:05d}") for n in range(5)]
    meta_sandbox.state.leads[lead_ids[2]]["created_time"] = "0001-01-01T00:30:00+0100"  # before year 1 in UTC

    with django_capture_on_commit_callbacks(execute=True):
        answer = post_signed(client, one_delivery(*[(lead_id, "900001", "700001") for lead_id in lead_ids]))

    statuses = dict(WebhookEvent.objects.values_list("dedupe_key", "status"))
    assert answer.status_code == 200
    assert sorted(LeadTouch.objects.filter(account=acme).values_list("external_id", flat=True)) == sorted(
        lead_ids[:2] + lead_ids[3:])
    assert statuses == {**{lead_id: "processed" for lead_id in lead_ids}, lead_ids[2]: "failed"}
