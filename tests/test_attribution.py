"""Lead attribution from Meta webhooks: Lead Ads (leadgen) and Click-to-WhatsApp, last touch wins."""
from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from crm_marketing import events
from crm_marketing.models import Lead, LeadTouch, WebhookEvent
from crm_marketing.sandbox import ctwa_message_payload, leadgen_payload, plain_message_payload, statuses_payload, status_event
from marketing.models import Ad, AdAccount, AdSet, Campaign
from marketing.services.attribution import AD_FIELDS, normalize_phone
from meta_oauth.models import MetaConnection
from tests.conftest import make_lead
from tests.fixtures.webhooks import acme_meta, connect_meta, post_signed  # noqa: F401

MARIA_FIELDS = {"full_name": "María Pérez", "email": "maria.perez@example.com", "phone_number": "+5491155550001",
                "¿qué_producto_te_interesa?": "Plan Pro"}
HEADLINE, BODY = "Plan Pro: 30% off en noviembre", "Escribinos por WhatsApp y te asesoramos"
CLID = "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0"
CLICKED_AT = 1795001000  # the sample's message time


def attribution_of(lead: Lead) -> dict:
    lead.refresh_from_db()
    return {"first_name": lead.first_name, "last_name": lead.last_name, "phone": lead.phone, "email": lead.email,
            "lead_source": lead.lead_source, "meta_campaign_id": lead.meta_campaign_id, "meta_adset_id": lead.meta_adset_id,
            "meta_ad_id": lead.meta_ad_id, "meta_form_id": lead.meta_form_id, "meta_ad_headline": lead.meta_ad_headline,
            "meta_ad_body": lead.meta_ad_body, "ctwa_clid": lead.ctwa_clid, "external_ids": lead.external_ids}


def touches_of(lead: Lead) -> list[tuple]:
    return list(lead.touches.order_by("touched_at").values_list(
        "lead_source", "external_id", "meta_campaign_id", "meta_adset_id", "meta_ad_id", "meta_form_id"))


@pytest.fixture
def published():
    """The domain events published (after commit) while the test runs."""
    seen: list[events.DomainEvent] = []
    names = (events.LEAD_CREATED, events.LEAD_REPLIED)
    for name in names:
        events.subscribe(name, seen.append)
    yield seen
    for name in names:
        events.unsubscribe(name, seen.append)


@pytest.fixture
def deliver(client, django_capture_on_commit_callbacks):
    """POST a signed payload like Meta and run what it queues (django-q2 runs tasks inline in tests)."""
    def send(payload):
        with django_capture_on_commit_callbacks(execute=True):
            response = post_signed(client, payload)
        assert response.status_code == 200, response.content
        return response.json()["data"]
    return send


def graph_calls(sandbox, path: str) -> list[dict]:
    return [r.query for r in sandbox.requests if r.method == "GET" and r.path == path]


def ctwa(wa_id="5491155550002", name="Lucas Gómez", ad_id="700002", **kwargs):
    return ctwa_message_payload(wa_id, name, ad_id, HEADLINE, BODY, CLID, "Hola, quiero más info del Plan Pro",
                                timestamp=kwargs.pop("timestamp", CLICKED_AT), **kwargs)


# -- Lead Ads ---------------------------------------------------------------------------------------------------
def test_the_same_leadgen_delivered_three_times_is_one_lead_one_touch_and_one_event(acme, acme_meta, meta_sandbox, deliver, published):
    answers = [deliver(leadgen_payload("800001", "900001", "700001")) for _ in range(3)]

    assert answers == [{"received": 1, "stored": 1}, {"received": 1, "stored": 0}, {"received": 1, "stored": 0}]
    lead = Lead.objects.get()
    assert attribution_of(lead) == {
        "first_name": "María", "last_name": "Pérez", "phone": "+5491155550001", "email": "maria.perez@example.com",
        "lead_source": "meta_lead_ads", "meta_campaign_id": "400001", "meta_adset_id": "500001", "meta_ad_id": "700001",
        "meta_form_id": "900001", "meta_ad_headline": "", "meta_ad_body": "", "ctwa_clid": "",
        "external_ids": {"meta_leadgen_id": "800001", "meta_form_fields": MARIA_FIELDS, "meta_campaign_name": "Leads Q4 - Formulario",
                         "meta_adset_name": "AR 25-45", "meta_ad_name": "Video testimonio"}}
    assert (lead.account_id, lead.created_at) == (acme.pk, dt.datetime(2026, 11, 24, 14, 3, 11, tzinfo=dt.timezone.utc))
    assert touches_of(lead) == [("meta_lead_ads", "800001", "400001", "500001", "700001", "900001")]
    assert WebhookEvent.objects.get().status == "processed"
    assert [(e.name, e.payload) for e in published] == [("lead_created", {"lead_id": lead.pk})]
    assert [q["fields"] for q in graph_calls(meta_sandbox, "/800001")] == [
        "id,created_time,ad_id,ad_name,adset_id,adset_name,campaign_id,campaign_name,form_id,field_data,is_organic,platform"]


def test_a_leadgen_for_an_existing_phone_moves_that_leads_attribution_to_the_form_and_adds_a_touch(acme, acme_meta, deliver, published):
    lead = make_lead(acme, first_name="Mari", phone="+5491155550001", lead_source="manual", external_ids={"crm_import": "77"})

    deliver(leadgen_payload("800001", "900001", "700001"))

    assert Lead.objects.count() == 1
    assert attribution_of(lead) == {
        "first_name": "Mari", "last_name": "", "phone": "+5491155550001", "email": "maria.perez@example.com",
        "lead_source": "meta_lead_ads", "meta_campaign_id": "400001", "meta_adset_id": "500001", "meta_ad_id": "700001",
        "meta_form_id": "900001", "meta_ad_headline": "", "meta_ad_body": "", "ctwa_clid": "",
        "external_ids": {"crm_import": "77", "meta_leadgen_id": "800001", "meta_form_fields": MARIA_FIELDS,
                         "meta_campaign_name": "Leads Q4 - Formulario", "meta_adset_name": "AR 25-45", "meta_ad_name": "Video testimonio"}}
    assert touches_of(lead) == [("meta_lead_ads", "800001", "400001", "500001", "700001", "900001")]
    assert published == []  # not a new lead


def test_a_leadgen_matches_an_existing_lead_by_email_ignoring_case(acme, acme_meta, deliver):
    lead = make_lead(acme, phone=None, email="Maria.Perez@Example.com")

    deliver(leadgen_payload("800001", "900001", "700001"))

    assert list(Lead.objects.values_list("pk", "phone", "email")) == [(lead.pk, "+5491155550001", "Maria.Perez@Example.com")]


def test_an_older_form_fill_adds_a_touch_but_the_latest_ctwa_click_keeps_the_attribution(acme, acme_meta, meta_sandbox, deliver):
    deliver(ctwa(wa_id="5491155550001", timestamp=int(timezone.now().timestamp())))
    lead_id = meta_sandbox.add_lead("900001", "700001", full_name="María Pérez", phone="+5491155550001",
                                    created_time=timezone.now() - dt.timedelta(days=2))

    deliver(leadgen_payload(lead_id, "900001", "700001"))

    lead = Lead.objects.get()
    assert [t[:2] for t in touches_of(lead)] == [("meta_lead_ads", lead_id), ("meta_ctwa", lead.touches.first().external_id)]
    assert attribution_of(lead)["lead_source"] == "meta_ctwa"
    assert (lead.meta_ad_id, lead.meta_form_id, lead.ctwa_clid) == ("700002", "", CLID)


def test_a_leadgen_goes_to_the_account_whose_page_it_names_even_when_another_account_has_the_ad(
        acme, globex, acme_meta, meta_sandbox, deliver):
    connect_meta(globex, meta_sandbox, phone_number_id="1300009", page_id="1500002", ad_account="act_300003")
    Ad.objects.create(account=globex, ad_account=AdAccount.objects.get(account=globex), meta_ad_id="700001", name="Video testimonio")

    deliver(leadgen_payload("800001", "900001", "700001", page_id="1500001"))

    assert list(Lead.objects.values_list("account__slug", "phone")) == [("acme", "+5491155550001")]
    assert WebhookEvent.objects.get().account == acme


def test_a_leadgen_for_a_page_of_another_stored_account_goes_there(acme, globex, acme_meta, meta_sandbox, deliver):
    connect_meta(globex, meta_sandbox, phone_number_id="1300009", page_id="1500002", ad_account="act_300003")

    deliver(leadgen_payload("800001", "900001", "700001", page_id="1500002"))

    assert list(Lead.objects.values_list("account__slug", "phone")) == [("globex", "+5491155550001")]
    assert WebhookEvent.objects.get().account == globex


def test_a_leadgen_for_an_unknown_page_id_creates_nothing_asks_meta_nothing_and_is_kept_as_ignored(
        acme, acme_meta, meta_sandbox, deliver, caplog):
    caplog.set_level("INFO", logger="crm_marketing.webhooks")

    deliver(leadgen_payload("800001", "900001", "700001", page_id="1599999"))

    event = WebhookEvent.objects.get()
    assert (event.status, event.error, event.account) == (
        "ignored", "no account has the Facebook page 1599999 (leadgen 800001)", None)
    assert not Lead.objects.exists() and not LeadTouch.objects.exists()
    assert graph_calls(meta_sandbox, "/800001") == []
    assert "no account has the Facebook page 1599999" in caplog.text


def test_a_leadgen_when_no_account_is_connected_is_kept_as_ignored(acme, deliver):
    deliver(leadgen_payload("800001", "900001", "700001"))

    event = WebhookEvent.objects.get()
    assert (event.status, event.error, event.account) == (
        "ignored", "no account has the Facebook page 1500001 (leadgen 800001)", None)
    assert not Lead.objects.exists()


def test_a_190_from_meta_marks_the_connection_for_reconnect_and_fails_the_event_keeping_its_payload(acme, acme_meta, meta_sandbox, deliver):
    meta_sandbox.expire_token()
    payload = leadgen_payload("800001", "900001", "700001")

    deliver(payload)

    acme_meta.refresh_from_db()
    assert (acme_meta.status, acme_meta.last_error) == ("needs_reconnect", "Meta error 190: token rejected")
    event = WebhookEvent.objects.get()
    assert (event.status, event.error, event.next_attempt_at, event.account) == (
        "failed", "fetching lead 800001: Meta rejected the token of acme (code 190); reconnect, then re-run", None, acme)
    assert event.payload == payload["entry"][0]["changes"][0]
    assert not Lead.objects.exists()


def test_a_transient_meta_failure_fails_the_event_with_a_retry_time_and_a_rerun_completes_it(acme, acme_meta, meta_sandbox, deliver, settings):
    settings.META_MAX_RETRIES = 0
    meta_sandbox.fail_next(1, status=500, code=2, message="Service temporarily unavailable", is_transient=True, path_contains="800001")

    deliver(leadgen_payload("800001", "900001", "700001"))

    event = WebhookEvent.objects.get()
    assert (event.status, event.account, event.attempts) == ("failed", acme, 1)
    assert event.error.startswith("fetching lead 800001: Graph GET /v26.0/800001 failed (HTTP 500, code 2)")
    assert event.next_attempt_at > timezone.now()
    assert not Lead.objects.exists()

    out = io.StringIO()
    call_command("process_webhook_events", stdout=out)

    assert out.getvalue() == "1 failed event(s) processed again: 1 processed\n"
    assert list(Lead.objects.values_list("phone", "meta_ad_id")) == [("+5491155550001", "700001")]


# -- Click-to-WhatsApp ------------------------------------------------------------------------------------------------
def test_a_ctwa_message_becomes_an_attributed_lead_with_the_ad_set_and_campaign_meta_reports(acme, acme_meta, meta_sandbox, deliver, published):
    deliver(ctwa())

    lead = Lead.objects.get()
    assert attribution_of(lead) == {
        "first_name": "Lucas", "last_name": "Gómez", "phone": "+5491155550002", "email": "", "lead_source": "meta_ctwa",
        "meta_campaign_id": "400002", "meta_adset_id": "500003", "meta_ad_id": "700002", "meta_form_id": "",
        "meta_ad_headline": HEADLINE, "meta_ad_body": BODY, "ctwa_clid": CLID,
        "external_ids": {"whatsapp_wa_id": "5491155550002", "meta_ctwa_message_id": lead.touches.get().external_id,
                         "meta_ctwa_source_url": "https://fb.me/sandbox"}}
    clicked = dt.datetime.fromtimestamp(CLICKED_AT, dt.timezone.utc)
    assert (lead.last_inbound_at, lead.created_at) == (clicked, clicked)
    assert touches_of(lead) == [("meta_ctwa", lead.external_ids["meta_ctwa_message_id"], "400002", "500003", "700002", "")]
    assert [q["fields"] for q in graph_calls(meta_sandbox, "/700002")] == [AD_FIELDS]
    assert list(Campaign.objects.values_list("account__slug", "meta_campaign_id", "name")) == [("acme", "400002", "CTWA - Promo Noviembre")]
    assert list(AdSet.objects.values_list("meta_adset_id", "campaign__meta_campaign_id", "name")) == [("500003", "400002", "CTWA AMBA")]
    assert list(Ad.objects.values_list("meta_ad_id", "adset__meta_adset_id", "campaign__meta_campaign_id", "name", "effective_status")) == [
        ("700002", "500003", "400002", "Plan Pro 30% off", "CAMPAIGN_PAUSED")]
    assert [(e.name, e.payload) for e in published] == [("lead_created", {"lead_id": lead.pk})]
    assert WebhookEvent.objects.get().result == f"lead {lead.pk} created from CTWA ad 700002"


def test_a_ctwa_ad_we_already_synced_is_resolved_from_our_tables_without_asking_meta(acme, acme_meta, meta_sandbox, deliver):
    ad_account = AdAccount.objects.get(account=acme)
    campaign = Campaign.objects.create(account=acme, ad_account=ad_account, meta_campaign_id="400002", name="CTWA - Promo Noviembre")
    adset = AdSet.objects.create(account=acme, ad_account=ad_account, campaign=campaign, meta_adset_id="500003",
                                 meta_campaign_id="400002", name="CTWA AMBA")
    Ad.objects.create(account=acme, ad_account=ad_account, campaign=campaign, adset=adset, meta_ad_id="700002",
                      meta_adset_id="500003", meta_campaign_id="400002", name="Plan Pro 30% off")

    deliver(ctwa())

    assert list(Lead.objects.values_list("meta_campaign_id", "meta_adset_id", "meta_ad_id")) == [("400002", "500003", "700002")]
    assert graph_calls(meta_sandbox, "/700002") == []
    assert meta_sandbox.requests == []


def test_a_ctwa_click_from_a_known_lead_updates_it_and_counts_as_a_reply(acme, acme_meta, deliver, published):
    lead = make_lead(acme, first_name="Lucas", phone="+5491155550002", lead_source="organic")

    deliver(ctwa())

    assert list(Lead.objects.values_list("pk", "lead_source", "meta_ad_id")) == [(lead.pk, "meta_ctwa", "700002")]
    message_id = LeadTouch.objects.get().external_id
    assert [(e.name, e.payload) for e in published] == [
        ("lead_replied", {"lead_id": lead.pk, "message_id": message_id, "replied_at": "2026-11-18T11:23:20+00:00"})]


def test_a_ctwa_message_when_meta_throttles_the_ad_lookup_keeps_the_lead_and_retries_for_the_ad_set(acme, acme_meta, meta_sandbox, deliver, settings):
    settings.META_MAX_RETRIES = 0
    meta_sandbox.fail_next(1, status=400, code=80000, message="(#80000) too many calls", path_contains="700002")

    deliver(ctwa())

    event = WebhookEvent.objects.get()
    assert (event.status, event.next_attempt_at is not None) == ("failed", True)
    assert event.error.startswith("looking up ad 700002: Graph GET /v26.0/700002 failed (HTTP 400, code 80000)")
    assert list(Lead.objects.values_list("meta_ad_id", "meta_adset_id", "ctwa_clid")) == [("700002", "", CLID)]

    call_command("process_webhook_events", stdout=io.StringIO())

    assert list(Lead.objects.values_list("meta_ad_id", "meta_adset_id", "meta_campaign_id")) == [("700002", "500003", "400002")]
    assert list(LeadTouch.objects.values_list("meta_adset_id", "meta_campaign_id")) == [("500003", "400002")]
    assert WebhookEvent.objects.get().status == "processed"


def test_a_plain_inbound_message_updates_the_known_leads_last_inbound_and_says_it_replied(acme, acme_meta, deliver, published):
    lead = make_lead(acme, phone="+5491155550003", lead_source="meta_lead_ads", meta_ad_id="700001")

    deliver(plain_message_payload("5491155550003", "Nora", "¿Sigue la promo?", message_id="wamid.PLAIN1", timestamp=CLICKED_AT))

    lead.refresh_from_db()
    assert (lead.last_inbound_at, lead.lead_source, lead.meta_ad_id) == (
        dt.datetime.fromtimestamp(CLICKED_AT, dt.timezone.utc), "meta_lead_ads", "700001")
    assert not LeadTouch.objects.exists()
    assert [(e.name, e.payload) for e in published] == [
        ("lead_replied", {"lead_id": lead.pk, "message_id": "wamid.PLAIN1", "replied_at": "2026-11-18T11:23:20+00:00"})]
    assert (WebhookEvent.objects.get().status, WebhookEvent.objects.get().dedupe_key) == ("processed", "msg:wamid.PLAIN1")


def test_a_plain_message_from_an_unknown_number_creates_no_lead(acme, acme_meta, deliver):
    deliver(plain_message_payload("5491155559999", "Nadie", "hola"))

    event = WebhookEvent.objects.get()
    assert (event.status, event.error, event.account) == ("ignored", "message from unknown number 5491155559999 without an ad referral", acme)
    assert not Lead.objects.exists()


def test_a_message_for_an_unknown_whatsapp_number_id_is_kept_as_ignored(acme, acme_meta, meta_sandbox, deliver):
    deliver(ctwa(phone_number_id="1399999"))

    event = WebhookEvent.objects.get()
    assert (event.status, event.error, event.account) == ("ignored", "no account has the WhatsApp phone number id 1399999", None)
    assert not Lead.objects.exists() and not LeadTouch.objects.exists()
    assert graph_calls(meta_sandbox, "/700002") == []


def test_a_ctwa_message_goes_to_the_account_whose_channel_has_the_phone_number_id(acme, globex, acme_meta, meta_sandbox, deliver):
    connect_meta(globex, meta_sandbox, phone_number_id="1300009", page_id=None, ad_account=None)

    deliver(ctwa(phone_number_id="1300009"))
    deliver(ctwa(wa_id="5491155550003", phone_number_id="1300001"))

    assert sorted(Lead.objects.values_list("account__slug", "phone", "meta_ad_id")) == [
        ("acme", "+5491155550003", "700002"), ("globex", "+5491155550002", "700002")]
    assert sorted(WebhookEvent.objects.values_list("account__slug", flat=True)) == ["acme", "globex"]


def test_a_statuses_change_is_not_marketings_business(acme, acme_meta, deliver):
    from marketing.handlers import handle_messages

    deliver(statuses_payload(status_event("wamid.X", "read", "5491155550001")))

    assert handle_messages(WebhookEvent.objects.get()) is None
    assert not Lead.objects.exists()


# -- backfill -------------------------------------------------------------------------------------------------------------
def test_backfill_records_the_leads_of_seen_forms_meta_never_delivered_and_twice_changes_nothing(
        acme, acme_meta, meta_sandbox, published, django_capture_on_commit_callbacks):
    known = make_lead(acme, first_name="Ya", phone="+5491155557777", meta_form_id="900002", lead_source="meta_lead_ads")
    now = timezone.now()
    meta_sandbox.add_lead("900002", "700003", full_name="Nora Díaz", phone="+5491155558888", created_time=now - dt.timedelta(days=1))
    meta_sandbox.add_lead("900002", "700003", full_name="Ya Conocido", phone="+5491155557777", created_time=now - dt.timedelta(hours=2))
    meta_sandbox.add_lead("900002", "700003", full_name="Muy Viejo", phone="+5491155556666", created_time=now - dt.timedelta(days=20))
    since = (now - dt.timedelta(days=7)).astimezone(dt.timezone(dt.timedelta(hours=-3))).date()

    outputs = []
    for _ in range(2):
        out = io.StringIO()
        with django_capture_on_commit_callbacks(execute=True):
            call_command("backfill_meta_leads", "--account", "acme", stdout=out)
        outputs.append(out.getvalue())

    assert outputs == [f"acme: 1 form(s), 2 lead(s) fetched since {since}, 1 new lead(s), 2 new touch(es)\n",
                       f"acme: 1 form(s), 2 lead(s) fetched since {since}, 0 new lead(s), 0 new touch(es)\n"]
    assert sorted(Lead.objects.values_list("first_name", "phone", "meta_form_id", "meta_campaign_id")) == [
        ("Nora", "+5491155558888", "900002", "400001"), ("Ya", "+5491155557777", "900002", "400001")]
    assert known.touches.count() == 1
    assert [e.name for e in published] == ["lead_created"]
    filters = [q["filtering"] for q in graph_calls(meta_sandbox, "/900002/leads")]
    assert len(filters) == 2 and '"field":"time_created","operator":"GREATER_THAN"' in filters[0]


def test_backfill_of_an_unconnected_account_says_so(acme):
    with pytest.raises(CommandError, match="Meta is not connected"):
        call_command("backfill_meta_leads", "--account", "acme")


def test_backfill_with_a_rejected_token_marks_the_connection_for_reconnect(acme, acme_meta, meta_sandbox):
    make_lead(acme, meta_form_id="900001")
    meta_sandbox.expire_token()

    with pytest.raises(CommandError, match="code 190"):
        call_command("backfill_meta_leads", "--account", "acme", "--since", "2026-11-01")

    assert MetaConnection.objects.get().status == "needs_reconnect"


def test_the_nightly_backfill_records_missed_leads_of_every_connected_account_and_keeps_going_past_failures(
        acme, acme_meta, globex, meta_sandbox):
    from django_q.models import Schedule

    from marketing.tasks import backfill_recent_leads

    make_lead(acme, first_name="Ya", meta_form_id="900002", lead_source="meta_lead_ads")
    meta_sandbox.add_lead("900002", "700003", full_name="Nora Díaz", phone="+5491155558888",
                          created_time=timezone.now() - dt.timedelta(days=1))
    # globex is connected too, but its token was revoked at Meta: its failure must not stop acme's pass.
    revoked = MetaConnection(account=globex, status="connected")
    revoked.set_token("EAArevokedToken")
    revoked.save()
    make_lead(globex, meta_form_id="900001", lead_source="meta_lead_ads")

    result = backfill_recent_leads()

    assert result.startswith("acme: 1 new lead(s) from 1 form(s); globex: failed:")
    assert Lead.objects.filter(account=acme, first_name="Nora", meta_form_id="900002").exists()
    assert MetaConnection.objects.get(account=globex).status == "needs_reconnect"
    assert Schedule.objects.get(name="marketing.backfill_recent_leads").func == "marketing.tasks.backfill_recent_leads"


# -- phones -------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, international, expected", [
    ("+54 9 11 5555-0001", False, "+5491155550001"),
    ("0054 9 11 5555 0001", False, "+5491155550001"),
    ("11 5555-0001", False, None),  # no country code: we will not guess one
    ("5491155550001", True, "+5491155550001"),  # a WhatsApp wa_id always carries it
    ("+0 123", False, None),
    ("", False, None),
])
def test_phones_are_normalised_to_e164_or_left_out(raw, international, expected):
    assert normalize_phone(raw, international=international) == expected
