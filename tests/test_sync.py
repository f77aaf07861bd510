"""Campaign, ad set, ad and insights sync against the Meta sandbox (real HTTP, no mocks)."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from crm_marketing.graph import GraphClient
from crm_marketing.sandbox.insights import figures
from marketing.models import Ad, AdAccount, AdSet, Campaign, DailyInsight, SyncRun
from marketing.services.insights import ad_account_today, lead_count
from marketing.services.sync import backfill_floor, sync_ad_account
from marketing.tasks import sync_due_ad_accounts
from marketing.time_ranges import Window
from meta_oauth.models import MetaConnection

FAST = {"poll_interval": 0.001}


@pytest.fixture
def meta_token(meta_sandbox) -> str:
    return meta_sandbox.issue_token()


@pytest.fixture
def connection(acme, meta_token) -> MetaConnection:
    connection = MetaConnection(account=acme, status=MetaConnection.Status.CONNECTED, meta_user_id="10001")
    connection.set_token(meta_token)
    connection.save()
    return connection


@pytest.fixture
def ad_account(acme, connection) -> AdAccount:
    return AdAccount.objects.create(account=acme, meta_ad_account_id="act_300001", meta_business_id="200001",
                                    name="Acme - Leads AR", currency="ARS",
                                    timezone_name="America/Argentina/Buenos_Aires")


@pytest.fixture
def client(meta_token) -> GraphClient:
    return GraphClient(meta_token, sleep=lambda seconds: None)


def insights_calls(sandbox, method: str | None = None, *, start: int = 0) -> list:
    return [r for r in sandbox.requests[start:] if r.path.endswith("/insights") and method in (None, r.method)]


def posted_windows(sandbox, *, start: int = 0) -> list[tuple[str, str]]:
    out = []
    for request in insights_calls(sandbox, "POST", start=start):
        time_range = request.body["time_range"]
        out.append((time_range["since"], time_range["until"]))
    return out


def spend_by_day(ad_account: AdAccount, meta_ad_id: str) -> dict[dt.date, Decimal]:
    return dict(DailyInsight.objects.filter(ad_account=ad_account, meta_ad_id=meta_ad_id).values_list("date", "spend"))


def test_a_full_sync_stores_campaigns_ad_sets_and_ads_including_paused_archived_and_deleted(ad_account, client, meta_sandbox):
    result = sync_ad_account(ad_account, client=client, **FAST)

    assert result.status == "succeeded"
    assert sorted(Campaign.objects.filter(ad_account=ad_account).values_list("meta_campaign_id", "status")) == [
        ("400001", "ACTIVE"), ("400002", "PAUSED"), ("400003", "ARCHIVED")]
    campaign = Campaign.objects.get(meta_campaign_id="400002")
    assert (campaign.name, campaign.objective, campaign.daily_budget, campaign.lifetime_budget) == (
        "CTWA - Promo Noviembre", "OUTCOME_ENGAGEMENT", None, 3000000)
    assert campaign.start_time.utcoffset() == dt.timedelta(0)  # stored aware, in UTC
    assert Campaign.objects.get(meta_campaign_id="400001").daily_budget == 150000
    assert sorted(Ad.objects.filter(ad_account=ad_account).values_list("meta_ad_id", "effective_status")) == [
        ("700001", "ACTIVE"), ("700002", "CAMPAIGN_PAUSED"), ("700003", "PAUSED"), ("700004", "DELETED"),
        ("700005", "ARCHIVED")]
    deleted_ad = Ad.objects.select_related("adset", "campaign").get(meta_ad_id="700004")
    assert (deleted_ad.adset.meta_adset_id, deleted_ad.campaign.meta_campaign_id) == ("500002", "400001")
    assert AdSet.objects.get(meta_adset_id="500003").campaign.meta_campaign_id == "400002"
    [batch] = [r for r in meta_sandbox.requests if r.path == "/" and r.method == "POST"]  # the three listings in one call
    ads_call = next(call["relative_url"] for call in batch.body["batch"] if call["relative_url"].startswith("act_300001/ads?"))
    statuses = json.loads(parse_qs(urlsplit(ads_call).query)["effective_status"][0])
    assert "DELETED" in statuses and "ARCHIVED" in statuses


def test_syncing_twice_keeps_the_same_rows(ad_account, client):
    first = sync_ad_account(ad_account, client=client, **FAST)
    counts = [DailyInsight.objects.count(), Campaign.objects.count(), AdSet.objects.count(), Ad.objects.count()]
    second = sync_ad_account(ad_account, client=client, **FAST)

    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert [DailyInsight.objects.count(), Campaign.objects.count(), AdSet.objects.count(), Ad.objects.count()] == counts
    assert counts[0] == first.rows > 0
    runs = list(SyncRun.objects.filter(ad_account=ad_account).order_by("id").values(
        "kind", "status", "rows", "graph_calls", "error"))
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert all(r["graph_calls"] > 0 and r["error"] == "" and r["kind"] == "full" for r in runs)
    ad_account.refresh_from_db()
    assert ad_account.last_synced_at is not None and ad_account.parked_until is None


def test_a_synced_day_holds_what_meta_reported_with_leads_counted_once(ad_account, client, meta_sandbox):
    sync_ad_account(ad_account, client=client, **FAST)
    row = DailyInsight.objects.filter(meta_ad_id="700001").order_by("-date")[3]
    expected = figures(meta_sandbox.state.seed, "700001", row.date, "ARS")

    # Campaign 400001 reports its leads as both "lead" and "onsite_conversion.lead_grouped".
    assert {"spend": row.spend, "impressions": row.impressions, "clicks": row.clicks, "link_clicks": row.link_clicks,
            "reach": row.reach, "leads": row.leads, "currency": row.currency, "campaign": row.meta_campaign_id,
            "adset": row.meta_adset_id} == {
        "spend": expected["spend"], "impressions": expected["impressions"], "clicks": expected["clicks"],
        "link_clicks": expected["inline_link_clicks"], "reach": expected["reach"], "leads": expected["leads"],
        "currency": "ARS", "campaign": "400001", "adset": "500001"}


def test_leads_are_the_largest_configured_action_type_not_the_sum(settings):
    settings.META_LEAD_ACTION_TYPES = ["lead", "onsite_conversion.lead_grouped"]
    actions = [{"action_type": "lead", "value": "17"}, {"action_type": "onsite_conversion.lead_grouped", "value": "17"},
               {"action_type": "link_click", "value": "351"}]

    assert lead_count(actions, settings.META_LEAD_ACTION_TYPES) == 17
    assert lead_count([{"action_type": "onsite_conversion.lead_grouped", "value": "4"}], ["lead"]) == 0
    assert lead_count(None, ["lead"]) == 0


def test_restated_days_overwrite_the_spend_already_stored(ad_account, client, meta_sandbox):
    sync_ad_account(ad_account, client=client, **FAST)
    before = spend_by_day(ad_account, "700001")
    today = meta_sandbox.state.today()
    restated_days = {today - dt.timedelta(days=n) for n in range(3)} & set(before)
    meta_sandbox.restate(1.5, last_days=3)

    sync_ad_account(ad_account, client=client, **FAST)
    after = spend_by_day(ad_account, "700001")

    assert restated_days and set(after) == set(before)
    for day in before:
        factor = 1.5 if day in restated_days else 1.0
        assert after[day] == figures(meta_sandbox.state.seed, "700001", day, "ARS", factor)["spend"], day
    assert all(after[day] > before[day] for day in restated_days)


def test_a_throttled_ad_account_is_parked_and_a_later_run_resumes(ad_account, client, meta_sandbox):
    meta_sandbox.fail_next(1, status=400, code=80000, regain_minutes=7, path_contains="insights")

    parked = sync_ad_account(ad_account, client=client, **FAST)

    ad_account.refresh_from_db()
    run = SyncRun.objects.get(pk=parked.run_id)
    assert (parked.status, run.status) == ("parked", "parked")
    assert "code 80000" in run.error and "parked until" in run.error
    assert dt.timedelta(minutes=6) < ad_account.parked_until - timezone.now() <= dt.timedelta(minutes=7)
    assert DailyInsight.objects.count() == 0

    calls_before = len(meta_sandbox.requests)
    skipped = sync_ad_account(ad_account, client=client, **FAST)
    assert (skipped.status, skipped.run_id, len(meta_sandbox.requests)) == ("skipped", None, calls_before)

    AdAccount.objects.filter(pk=ad_account.pk).update(parked_until=timezone.now() - dt.timedelta(seconds=1))
    ad_account.refresh_from_db()
    resumed = sync_ad_account(ad_account, client=client, **FAST)

    ad_account.refresh_from_db()
    assert resumed.status == "succeeded" and resumed.rows == DailyInsight.objects.count() > 0
    assert ad_account.parked_until is None


def test_usage_headers_asking_to_wait_park_the_ad_account_too(ad_account, client, meta_sandbox):
    # A rate-limited answer on a GET the client would retry: Meta's regain time (60 s) is past its
    # backoff cap, so the client gives up and the sync parks for what the headers say.
    meta_sandbox.fail_next(1, status=400, code=17, regain_minutes=1, path_contains="campaigns")

    result = sync_ad_account(ad_account, client=client, **FAST)

    ad_account.refresh_from_db()
    assert result.status == "parked" and "code 17" in result.error
    assert dt.timedelta(seconds=50) < ad_account.parked_until - timezone.now() <= dt.timedelta(seconds=60)


def test_an_expired_token_stops_the_sync_and_asks_to_reconnect(ad_account, client, connection, meta_sandbox, meta_token):
    meta_sandbox.expire_token(meta_token)

    result = sync_ad_account(ad_account, client=client, **FAST)

    connection.refresh_from_db()
    run = SyncRun.objects.get(pk=result.run_id)
    assert (result.status, run.status, run.graph_calls) == ("failed", "failed", 1)
    assert run.error == "Meta rejected the access token (code 190): reconnect Meta to resume syncing."
    assert connection.status == MetaConnection.Status.NEEDS_RECONNECT
    assert len(meta_sandbox.requests) == 1


def test_every_page_of_a_report_is_read(ad_account, client, meta_sandbox):
    result = sync_ad_account(ad_account, client=client, kind=SyncRun.Kind.INSIGHTS, page_size=25,
                             backfill_seconds=0, **FAST)

    run_id = next(r.path.split("/")[1] for r in insights_calls(meta_sandbox, "GET") if not r.path.startswith("/act_"))
    pages = [r for r in meta_sandbox.requests if r.path == f"/{run_id}/insights"]
    assert result.status == "succeeded"
    assert len(pages) == -(-result.rows // 25) >= 3
    assert [r.query.get("limit") for r in pages] == ["25"] * len(pages)
    assert DailyInsight.objects.count() == result.rows


def test_a_failed_report_job_is_narrowed_and_the_sync_still_completes(ad_account, client, meta_sandbox):
    meta_sandbox.insights_job_plan(["Job Running", "Job Failed"])

    result = sync_ad_account(ad_account, client=client, kind=SyncRun.Kind.INSIGHTS, backfill_seconds=0, **FAST)

    window = Window(*(dt.date.fromisoformat(d) for d in posted_windows(meta_sandbox)[0]))
    older, newer = window.halves()
    assert result.status == "succeeded"
    assert posted_windows(meta_sandbox) == [(str(window.since), str(window.until)), (str(newer.since), str(newer.until)),
                                            (str(older.since), str(older.until))]
    stored = DailyInsight.objects.count()
    again = sync_ad_account(ad_account, client=client, kind=SyncRun.Kind.INSIGHTS, backfill_seconds=0, **FAST)
    assert again.rows == stored == DailyInsight.objects.count() > 0


def test_too_much_data_halves_the_window_until_meta_answers(ad_account, client, meta_sandbox):
    meta_sandbox.insights_job_plan(too_much_data=True, runs=2)

    result = sync_ad_account(ad_account, client=client, kind=SyncRun.Kind.INSIGHTS, backfill_seconds=0, **FAST)

    days = [(dt.date.fromisoformat(u) - dt.date.fromisoformat(s)).days + 1 for s, u in posted_windows(meta_sandbox)]
    assert result.status == "succeeded" and result.rows > 0
    assert days[:3] == [29, 15, 8] and sum(days[2:]) == 29


def test_a_report_that_fails_even_for_one_day_fails_the_run(ad_account, client, meta_sandbox):
    meta_sandbox.insights_job_plan(["Job Failed"], runs=50)

    result = sync_ad_account(ad_account, client=client, kind=SyncRun.Kind.INSIGHTS, backfill_seconds=0, **FAST)

    assert result.status == "failed"
    assert result.error.startswith("Meta could not build the report for ") and "Job Failed" in result.error
    assert SyncRun.objects.get(pk=result.run_id).status == "failed"


def test_the_first_sync_backfills_history_in_slices_and_stops_where_meta_has_no_more(ad_account, client, meta_sandbox):
    result = sync_ad_account(ad_account, client=client, **FAST)

    ad_account.refresh_from_db()
    today = ad_account_today(ad_account)
    recent = (str(today - dt.timedelta(days=28)), str(today))
    first_slice = (str(today - dt.timedelta(days=118)), str(today - dt.timedelta(days=29)))
    assert result.status == "succeeded"
    assert posted_windows(meta_sandbox) == [recent, first_slice]
    assert ad_account.backfilled_since == backfill_floor(today)
    # The archived campaign's ad ran from 200 to 60 days ago: its old spend is there, under its name.
    assert DailyInsight.objects.filter(meta_ad_id="700005").exists()
    assert Ad.objects.get(meta_ad_id="700005").name == "Invierno video"
    run = SyncRun.objects.get(pk=result.run_id)
    assert (run.since, run.until) == (today - dt.timedelta(days=118), today)


def test_an_interrupted_backfill_resumes_from_backfilled_since(ad_account, client, meta_sandbox):
    sync_ad_account(ad_account, client=client, backfill_seconds=0, **FAST)  # time-boxed: recent window only
    ad_account.refresh_from_db()
    today = ad_account_today(ad_account)
    assert ad_account.backfilled_since == today - dt.timedelta(days=28)
    assert not DailyInsight.objects.filter(meta_ad_id="700005").exists()

    start = len(meta_sandbox.requests)
    resumed = sync_ad_account(ad_account, client=client, **FAST)

    ad_account.refresh_from_db()
    assert resumed.status == "succeeded"
    assert posted_windows(meta_sandbox, start=start)[1] == (str(today - dt.timedelta(days=118)), str(today - dt.timedelta(days=29)))
    assert ad_account.backfilled_since == backfill_floor(today)
    assert DailyInsight.objects.filter(meta_ad_id="700005").exists()


def test_ads_seen_only_in_insights_get_rows_named_after_them(ad_account, client):
    result = sync_ad_account(ad_account, client=client, kind=SyncRun.Kind.INSIGHTS, **FAST)

    assert result.status == "succeeded"
    ad = Ad.objects.select_related("adset", "campaign").get(meta_ad_id="700005")
    assert (ad.name, ad.adset.name, ad.campaign.name, ad.campaign.meta_campaign_id) == (
        "Invierno video", "Invierno 30-50", "Leads Invierno", "400003")
    assert ad.account_id == ad_account.account_id


def test_an_explicit_since_syncs_that_range_in_slices_and_skips_slices_without_data(ad_account, client, meta_sandbox):
    today = ad_account_today(ad_account)
    since = today - dt.timedelta(days=299)  # four 90-day slices; the sandbox has 90 days of data

    result = sync_ad_account(ad_account, client=client, kind=SyncRun.Kind.INSIGHTS, since=since, **FAST)

    ad_account.refresh_from_db()
    probes = [r.query for r in insights_calls(meta_sandbox, "GET") if r.path == "/act_300001/insights"]
    assert result.status == "succeeded"
    assert posted_windows(meta_sandbox) == [(str(today - dt.timedelta(days=89)), str(today))]
    assert [(p["level"], p["time_increment"], p["time_range"]) for p in probes] == [
        ("account", "all_days", f'{{"since":"{since}","until":"{today - dt.timedelta(days=90)}"}}')]
    assert ad_account.backfilled_since == since
    assert min(DailyInsight.objects.values_list("date", flat=True)) >= today - dt.timedelta(days=89)


def test_a_short_refresh_by_hand_after_a_pause_does_not_make_the_next_sync_skip_the_days_between(ad_account, client, meta_sandbox):
    # acme's history was complete 60 days ago, then Meta stayed disconnected; alice refreshes the last week by hand.
    today = ad_account_today(ad_account)
    paused_at = timezone.now() - dt.timedelta(days=60)
    AdAccount.objects.filter(pk=ad_account.pk).update(last_synced_at=paused_at, backfilled_since=backfill_floor(today))
    ad_account.refresh_from_db()

    week = sync_ad_account(ad_account, client=client, kind=SyncRun.Kind.INSIGHTS, since=today - dt.timedelta(days=6), **FAST)
    ad_account.refresh_from_db()
    start = len(meta_sandbox.requests)
    scheduled = sync_ad_account(ad_account, client=client, kind=SyncRun.Kind.INSIGHTS, **FAST)

    # The week did not join the last full sync: the next sync reads from that sync's day (60 days ago), not from
    # today-28, which would leave days 60..29 ago unsynced for good.
    assert (week.status, scheduled.status) == ("succeeded", "succeeded")
    assert posted_windows(meta_sandbox, start=start) == [(str(ad_account_today(ad_account, paused_at)), str(today))]
    ad_account.refresh_from_db()
    assert ad_account.last_synced_at > paused_at and ad_account.backfilled_since == backfill_floor(today)
    stored_days = set(DailyInsight.objects.filter(ad_account=ad_account).values_list("date", flat=True))
    assert {today - dt.timedelta(days=n) for n in range(61)} <= stored_days


def test_last_synced_at_is_when_the_run_began_reading_so_a_run_across_midnight_leaves_no_day_unread(ad_account, client):
    # The restatement window ends on the day the run started; a run that ends after midnight must not claim
    # the new day, or a sync after a pause of over 28 days would start on that day, never read.
    result = sync_ad_account(ad_account, client=client, kind=SyncRun.Kind.INSIGHTS, backfill_seconds=0, **FAST)

    ad_account.refresh_from_db()
    run = SyncRun.objects.get(pk=result.run_id)
    assert result.status == "succeeded"
    assert ad_account.last_synced_at <= run.started_at < run.finished_at
    assert result.until == ad_account_today(ad_account, ad_account.last_synced_at)


def test_sync_meta_campaigns_prints_one_summary_line(ad_account, meta_sandbox):
    out = StringIO()

    call_command("sync_meta_campaigns", "--account", "acme", stdout=out)

    assert out.getvalue().count("\n") == 1
    assert out.getvalue().startswith("Synced campaigns of 1 ad account: 1 succeeded, 12 campaigns/ad sets/ads, ")
    assert Ad.objects.count() == 5 and DailyInsight.objects.count() == 0


def test_sync_meta_insights_prints_one_summary_line(ad_account, meta_sandbox, settings):
    settings.META_INSIGHTS_POLL_SECONDS = 0.001
    today = ad_account_today(ad_account)
    out = StringIO()

    call_command("sync_meta_insights", "--since", str(today - dt.timedelta(days=6)), stdout=out)

    rows = DailyInsight.objects.count()
    assert rows > 0 and set(DailyInsight.objects.values_list("date", flat=True)) <= {
        today - dt.timedelta(days=n) for n in range(7)}
    assert out.getvalue() == f"Synced insights of 1 ad account: 1 succeeded, {rows} insight rows, " \
        f"{SyncRun.objects.get().graph_calls} Graph calls.\n"


def test_the_schedule_queues_a_sync_of_every_due_ad_account(ad_account, meta_sandbox, settings,
                                                           django_capture_on_commit_callbacks):
    settings.META_INSIGHTS_POLL_SECONDS = 0.001
    schedule = Schedule.objects.get(name="marketing.sync_due_ad_accounts")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "marketing.tasks.sync_due_ad_accounts", Schedule.MINUTES, 15)

    with django_capture_on_commit_callbacks(execute=True):
        assert sync_due_ad_accounts() == "queued 1 ad account syncs"

    run = SyncRun.objects.get()
    assert (run.kind, run.status) == ("full", "succeeded")
    assert sync_due_ad_accounts() == "queued 0 ad account syncs"  # synced within the interval


def test_the_admin_shows_each_staff_member_only_their_synced_rows_read_only(alice, mallory, globex, ad_account):
    from django.test import Client

    from crm_marketing.demo import staff_group
    from marketing.models import ExchangeRate

    for user in (alice, mallory):
        user.groups.add(staff_group())
    AdAccount.objects.create(account=globex, meta_ad_account_id="act_300003", name="Globex EU", currency="EUR")
    SyncRun.objects.create(account=ad_account.account, ad_account=ad_account, kind="full", status="succeeded",
                           error="acme-run")
    browser = Client()
    browser.force_login(alice)

    ad_accounts = browser.get("/admin/marketing/adaccount/")
    runs = browser.get("/admin/marketing/syncrun/")
    change = browser.get(f"/admin/marketing/adaccount/{ad_account.pk}/change/")
    rate = browser.post("/admin/marketing/exchangerate/add/", {
        "account": ad_account.account_id, "from_currency": "USD", "to_currency": "ARS", "rate": "1000"})

    assert b"act_300001" in ad_accounts.content and b"act_300003" not in ad_accounts.content
    assert b"parked_until" in ad_accounts.content or b"Parked until" in ad_accounts.content
    assert b"acme-run" in runs.content
    assert change.status_code == 200 and b'name="name"' not in change.content  # view only, no form fields
    assert browser.get("/admin/marketing/adaccount/add/").status_code == 403
    assert browser.get("/admin/marketing/dailyinsight/add/").status_code == 403
    assert rate.status_code == 302
    assert ExchangeRate.objects.get().rate == Decimal("1000")
