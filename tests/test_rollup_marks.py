"""CRM writes and insights upserts mark their ROI rollup cells; a worker folds the marks
(marketing.services.rollup_marks), and until it has, the stats recompute the marked cells (marketing.stats.pending).

Every figure is checked against ``recomputed``: plain Python over the account's leads, opportunities, sales
and insights (no rollup code), both before the fold (what the stats answer) and after it (the rollup table).
alice owns acme (USD, UTC-3); globex is mallory's.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from collections import defaultdict
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, connections, transaction
from django.test import Client
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule

from crm_marketing import services
from crm_marketing.models import Account, Lead, Opportunity, Sale
from marketing.models import CampaignDay, DailyInsight, RollupDirtyCell
from marketing.services import rollup_marks
from marketing.services.insight_store import upsert_insights
from marketing.tasks import fold_all_roi_rollups, rebuild_recent_roi_rollups
from tests.factories import make_ad_account, make_campaign, make_lead, make_sale
from tests.test_stats import data_of

pytestmark = pytest.mark.django_db
ZERO = Decimal("0")


# -- the independent recomputation ------------------------------------------------------------------------------
def recomputed(account: Account) -> dict[tuple, tuple]:
    """(day, campaign, currency) -> (spend, impressions, clicks, leads, opportunities, revenue, sales), from the raw rows."""
    tz = ZoneInfo(account.timezone)
    cells: dict[tuple, list] = defaultdict(lambda: [ZERO, 0, 0, 0, 0, ZERO, 0])
    leads = {row["id"]: row for row in Lead.objects.filter(account=account).values("id", "lead_source", "meta_campaign_id", "created_at")}
    for lead in leads.values():
        if lead["lead_source"] in ("meta_lead_ads", "meta_ctwa"):
            cells[(lead["created_at"].astimezone(tz).date(), lead["meta_campaign_id"], account.currency)][3] += 1
    for opportunity in Opportunity.objects.filter(account=account).values("lead_id", "created_at"):
        lead = leads[opportunity["lead_id"]]
        if lead["lead_source"] in ("meta_lead_ads", "meta_ctwa"):
            cells[(opportunity["created_at"].astimezone(tz).date(), lead["meta_campaign_id"], account.currency)][4] += 1
    for sale in Sale.objects.filter(account=account, status="completed").values("lead_id", "closed_at", "amount", "currency"):
        lead = leads[sale["lead_id"]]  # the lead is the truth; the sale's copy of its attribution must agree
        if lead["lead_source"] in ("meta_lead_ads", "meta_ctwa"):
            cell = cells[(sale["closed_at"].astimezone(tz).date(), lead["meta_campaign_id"], sale["currency"])]
            cell[5] += sale["amount"]
            cell[6] += 1
    for insight in DailyInsight.objects.filter(account=account).values("date", "meta_campaign_id", "currency", "spend", "impressions", "clicks"):
        cell = cells[(insight["date"], insight["meta_campaign_id"], insight["currency"])]
        cell[0] += insight["spend"]
        cell[1] += insight["impressions"]
        cell[2] += insight["clicks"]
    return {key: tuple(values) for key, values in cells.items() if any(values)}


def stored(account: Account) -> dict[tuple, tuple]:
    """The rollup table as it is (no fold)."""
    return {(row[0], row[1], row[2]): tuple(row[3:]) for row in CampaignDay.objects.filter(account=account)
            .values_list("day", "meta_campaign_id", "currency", *CampaignDay.MEASURES)}


def totals(cells: dict[tuple, tuple], since: dt.date, until: dt.date) -> dict:
    """The stats endpoint's sums of the cells in [since, until] (one currency: no conversion)."""
    sums = [ZERO, 0, 0, 0, 0, ZERO, 0]
    for (day, _, _), values in cells.items():
        if since <= day <= until:
            sums = [a + b for a, b in zip(sums, values)]
    return {"marketing_spend": float(sums[0]), "leads": sums[3], "opportunities": sums[4], "sales_revenue": float(sums[5])}


def stats(api, since: dt.date, until: dt.date) -> dict:
    data = data_of(api.get(f"/crm/marketing/stats?since={since}&until={until}"))
    return {name: data[name] for name in ("marketing_spend", "leads", "opportunities", "sales_revenue")}


def today(account: Account) -> dt.date:
    return timezone.localdate(timezone=ZoneInfo(account.timezone))


def marks(account: Account) -> set[tuple]:
    return set(RollupDirtyCell.objects.filter(account=account).values_list("kind", "day", "meta_campaign_id"))


def queued_folds() -> list:
    return [task.task["args"] for task in OrmQ.objects.order_by("id") if task.task["func"] == rollup_marks.FOLD_TASK]


def meta_lead(account: Account, campaign: str = "120001", **fields) -> Lead:
    return services.create_lead(account, first_name="Meta", lead_source="meta_lead_ads", meta_campaign_id=campaign, **fields)


# -- writes, marks and folds ---------------------------------------------------------------------------------------
def test_leads_and_a_sale_written_through_the_services_count_at_once_and_are_in_the_rollup_once_folded(alice_api, acme):
    day = today(acme)
    lead = meta_lead(acme, phone="+5491155550101")
    meta_lead(acme, campaign="120002", phone="+5491155550102")
    opportunity = services.create_opportunity(acme, lead=lead, amount=Decimal("300.00"))
    services.update_opportunity(opportunity, stage="won")

    before_fold = stats(alice_api, day, day)
    assert stored(acme) == {} and marks(acme) == {("crm", day, "")}  # one mark per account day, whatever the campaign
    folded = rollup_marks.fold_account(acme.pk)

    assert before_fold == stats(alice_api, day, day) == totals(recomputed(acme), day, day) == {
        "marketing_spend": 0.0, "leads": 2, "opportunities": 1, "sales_revenue": 300.0}
    assert stored(acme) == recomputed(acme) and marks(acme) == set()
    assert (folded.marks, folded.crm_days, folded.rows_written) == (4, 1, 2)  # lead, lead, opportunity, sale


def test_a_burst_of_writes_queues_one_fold_and_the_next_write_after_it_started_queues_another(
        acme, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)  # the queued folds land in the ORM queue, as in production
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(3):
            meta_lead(acme, phone=f"+549115555020{n}")
    queued_by_the_burst = queued_folds()

    rollup_marks.fold_account(acme.pk)  # the worker starts the queued fold
    with django_capture_on_commit_callbacks(execute=True):
        meta_lead(acme, phone="+5491155550209")

    assert queued_by_the_burst == [(acme.pk,)]
    assert queued_folds() == [(acme.pk,), (acme.pk,)]


def test_a_write_that_rolls_back_leaves_no_mark_and_queues_no_fold(acme, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        meta_lead(acme, phone="+5491155550301")
        raise RuntimeError("the request failed after the lead")

    assert marks(acme) == set() and queued_folds() == []


def test_a_fold_takes_the_marks_in_batches_and_queues_its_successor_when_some_are_left(
        acme, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)
    for n in range(5):
        meta_lead(acme, phone=f"+549115555040{n}", created_at=timezone.now() - dt.timedelta(days=n))

    with django_capture_on_commit_callbacks(execute=True):
        first = rollup_marks.fold_account(acme.pk, batch=2, max_batches=1)
    left = len(marks(acme))
    rest = rollup_marks.fold_account(acme.pk, batch=2)

    assert (first.marks, first.more_left, left, queued_folds()) == (2, True, 3, [(acme.pk,)])
    assert (rest.marks, rest.more_left) == (3, False)
    assert stored(acme) == recomputed(acme) and marks(acme) == set()


def test_an_insights_upsert_marks_its_cells_and_the_fold_writes_their_spend(alice_api, acme):
    ad_account = make_ad_account(acme, "act_usd", "USD", selected=True)
    make_campaign(ad_account, "120001", "Spring Leads")
    day, now = today(acme), timezone.now()
    rows = [(acme.pk, ad_account.pk, "120001", "s1", f"ad{n}", day - dt.timedelta(days=d), "USD",
             Decimal(f"{10 + n}.25"), 1000, 10, 5, 900, 1, now) for n in range(3) for d in range(2)]

    upsert_insights(rows)
    before_fold = stats(alice_api, day - dt.timedelta(days=1), day)
    rollup_marks.fold_account(acme.pk)

    assert before_fold == stats(alice_api, day - dt.timedelta(days=1), day) == totals(recomputed(acme), day - dt.timedelta(days=1), day) == {
        "marketing_spend": 2 * (10.25 + 11.25 + 12.25), "leads": 0, "opportunities": 0, "sales_revenue": 0.0}
    assert stored(acme) == recomputed(acme)


def test_a_day_meta_restates_in_another_currency_keeps_no_spend_in_the_old_one_once_folded(acme):
    ad_account = make_ad_account(acme, "act_usd", "USD", selected=True)
    make_campaign(ad_account, "120001", "Spring Leads")
    day, now = today(acme), timezone.now()
    upsert_insights([(acme.pk, ad_account.pk, "120001", "s1", "ad1", day, "USD", Decimal("10.25"), 1000, 10, 5, 900, 1, now),
                     (acme.pk, ad_account.pk, "120001", "s1", "ad2", day, "USD", Decimal("4.00"), 400, 4, 2, 300, 0, now)])
    rollup_marks.fold_account(acme.pk)

    upsert_insights([(acme.pk, ad_account.pk, "120001", "s1", "ad1", day, "BRL", Decimal("41.00"), 1000, 10, 5, 900, 1, now),
                     (acme.pk, ad_account.pk, "120001", "s1", "ad2", day, "BRL", Decimal("16.00"), 400, 4, 2, 300, 0, now)])
    folded = rollup_marks.fold_account(acme.pk)

    assert stored(acme) == recomputed(acme) == {(day, "120001", "BRL"): (Decimal("57.00"), 1400, 14, 0, 0, ZERO, 0)}
    assert folded.rows_written == 2  # the BRL row written, the USD row emptied (then dropped)


def test_every_endpoint_answers_the_same_before_and_after_the_fold(alice_api, acme):
    ad_account = make_ad_account(acme, "act_usd", "USD", selected=True)
    make_campaign(ad_account, "120001", "Spring Leads")
    make_campaign(ad_account, "120002", "WhatsApp Promo")
    old = meta_lead(acme, phone="+5491155550501", created_at=timezone.now() - dt.timedelta(days=3))
    make_sale(old, "80.00", closed_at=timezone.now() - dt.timedelta(days=2))
    rollup_marks.fold_account(acme.pk)
    paths = ["stats", "stats/roi", "stats/timeseries", "stats/timeseries?campaign_id=120002", "campaigns", "campaigns/120001",
             "campaigns/120002", "campaigns/120002/insights"]

    def answers() -> list:
        return [data_of(alice_api.get(f"/crm/marketing/{path}{'&' if '?' in path else '?'}time_range=7d")) for path in paths]

    at_start = answers()
    alice_api.post("/crm/leads", {"first_name": "New", "phone": "+5491155550502", "lead_source": "meta_ctwa",
                                  "meta_campaign_id": "120002"}, format="json")
    alice_api.patch(f"/crm/leads/{old.pk}", {"meta_campaign_id": "120002"}, format="json")  # its sale moves with it
    not_folded = answers()
    rollup_marks.fold_account(acme.pk)

    assert not_folded == answers() != at_start
    moved = not_folded[paths.index("campaigns/120002")]["performance"]
    assert (moved["leads"], moved["revenue"]) == (2, 80.0)  # the new lead, and the old one with its sale


# -- writes around the models -----------------------------------------------------------------------------------------
def test_a_queryset_update_is_counted_once_its_writer_marks_the_days_with_mark_dirty(alice_api, acme):
    day = today(acme)
    lead = meta_lead(acme, phone="+5491155550601", created_at=timezone.now() - dt.timedelta(days=10))
    rollup_marks.fold_account(acme.pk)
    moved_to = timezone.now() - dt.timedelta(days=1)

    Lead.objects.filter(pk=lead.pk).update(created_at=moved_to)  # no save(): no signal sees it
    unmarked = stats(alice_api, day - dt.timedelta(days=1), day)
    with transaction.atomic():
        rollup_marks.mark_dirty(acme.pk, days={day - dt.timedelta(days=10), moved_to.astimezone(ZoneInfo(acme.timezone)).date()})
    marked = stats(alice_api, day - dt.timedelta(days=1), day)
    rollup_marks.fold_account(acme.pk)

    assert unmarked["leads"] == 0
    assert marked == stats(alice_api, day - dt.timedelta(days=1), day) == totals(recomputed(acme), day - dt.timedelta(days=1), day)
    assert marked["leads"] == 1 and stored(acme) == recomputed(acme)


def test_the_nightly_repair_moves_a_year_old_sale_whose_lead_was_changed_around_save(alice_api, acme):
    long_ago = timezone.now() - dt.timedelta(days=400)
    lead = meta_lead(acme, phone="+5491155550701", created_at=long_ago)
    Opportunity.objects.create(account=acme, lead=lead, currency="USD", created_at=long_ago + dt.timedelta(days=5))
    make_sale(lead, "250.00", closed_at=long_ago + dt.timedelta(days=20))
    rollup_marks.fold_account(acme.pk)
    Lead.objects.filter(pk=lead.pk).update(meta_campaign_id="120999")  # a data fix in SQL; the sale's copy drifts

    summary = rebuild_recent_roi_rollups()  # re-derives 35 days, and the drifted sale's days whatever their age
    lifetime = data_of(alice_api.get("/crm/marketing/stats/roi?time_range=lifetime"))
    rollup_marks.fold_account(acme.pk)

    assert summary.endswith("0 rows written, 1 sale(s) re-attributed")
    assert Sale.objects.get(lead=lead).meta_campaign_id == "120999"
    assert stored(acme) == recomputed(acme)
    assert {cell[1] for cell in stored(acme)} == {"120999"}  # the lead, its opportunity and its sale, 380-400 days ago
    assert (lifetime["total_revenue"], lifetime["total_spend"]) == (250.0, 0.0)


# -- the race ---------------------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_lead_committed_while_a_fold_runs_keeps_its_mark_and_is_folded_next(alice_api, acme, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("needs two connections writing at once: SQLite serializes writers (the fold would wait on the open write)")
    monkeypatch.setattr(Conf, "SYNC", False)  # the folds the commits queue wait in the ORM queue: the test runs them
    day = today(acme)
    meta_lead(acme, phone="+5491155550801")  # committed, marked
    written, release, done = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                meta_lead(acme, phone="+5491155550802")  # marked in this open transaction
                written.set()
                release.wait(30)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()
            done.set()

    threading.Thread(target=slow_writer).start()
    written.wait(30)
    during = rollup_marks.fold_account(acme.pk)  # reads the first mark only: the second is not committed
    release.set()
    done.wait(30)
    stale_rollup, left = stored(acme), marks(acme)
    read_before_the_next_fold = stats(alice_api, day, day)
    rollup_marks.fold_account(acme.pk)

    assert errors == []
    assert during.marks == 1 and sum(cell[3] for cell in stale_rollup.values()) == 1
    assert left == {("crm", day, "")}  # the open write's mark survived the fold
    assert read_before_the_next_fold == totals(recomputed(acme), day, day) and read_before_the_next_fold["leads"] == 2
    assert stored(acme) == recomputed(acme) and marks(acme) == set()


def wait_until_a_statement_waits_on_a_lock() -> None:
    """Poll PostgreSQL until a backend of this database waits on a lock (a bound against hanging, not a timing)."""
    deadline = time.monotonic() + 60
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
            if cursor.fetchone()[0]:
                return
            if time.monotonic() > deadline:
                pytest.fail("the fold never waited on the held cell")
            time.sleep(0.02)


@pytest.mark.django_db(transaction=True)
def test_a_lead_committed_after_the_fold_read_the_leads_and_before_it_deleted_the_marks_is_not_lost(alice_api, acme, monkeypatch):
    """The narrowest window: the fold has counted the leads and is writing the cell when the write commits.
    The writer holds the cell's rollup row (FOR UPDATE) so the fold stops right there until it commits."""
    if connection.vendor != "postgresql":
        pytest.skip("needs row locks across two connections: SQLite locks the whole database")
    monkeypatch.setattr(Conf, "SYNC", False)  # the folds the commits queue wait in the ORM queue: the test runs them
    day = today(acme)
    meta_lead(acme, phone="+5491155550811")
    rollup_marks.fold_account(acme.pk)  # the cell (today, 120001) exists with 1 lead
    meta_lead(acme, phone="+5491155550812")  # committed and marked: the fold below reads this mark
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    folded: list[rollup_marks.FoldResult] = []

    def writer() -> None:
        try:
            with transaction.atomic():
                meta_lead(acme, phone="+5491155550813")  # marked in this transaction
                list(CampaignDay.objects.select_for_update().filter(account=acme, day=day))
                holding.set()
                release.wait(60)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    def worker() -> None:
        try:
            folded.append(rollup_marks.fold_account(acme.pk))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    writing = threading.Thread(target=writer)
    writing.start()
    holding.wait(60)
    folding = threading.Thread(target=worker)
    folding.start()
    wait_until_a_statement_waits_on_a_lock()  # the fold counted 2 leads and waits to write the cell
    release.set()
    writing.join()
    folding.join()
    left = marks(acme)
    read_before_the_next_fold = stats(alice_api, day, day)
    rollup_marks.fold_account(acme.pk)

    assert errors == [] and folded[0].marks == 1
    assert left == {("crm", day, "")}  # the third lead's mark was not among the marks the fold deleted
    assert read_before_the_next_fold == totals(recomputed(acme), day, day) and read_before_the_next_fold["leads"] == 3
    assert stored(acme) == recomputed(acme) and marks(acme) == set()


@pytest.mark.django_db(transaction=True)
def test_four_writers_and_a_folding_worker_at_once_lose_no_lead(alice_api, acme):
    """With Q_SYNC each writer's commit also runs a queued fold inline: folds race each other too."""
    if connection.vendor != "postgresql":
        pytest.skip("needs concurrent writers: shared-cache SQLite answers SQLITE_LOCKED at once instead of waiting")
    writers_done = threading.Event()
    errors: list[BaseException] = []
    folds: list[int] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                meta_lead(acme, campaign=f"12000{i % 3}", phone=f"+549115556{n}{i:03d}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    def worker() -> None:
        try:
            while not writers_done.is_set():
                folds.append(rollup_marks.fold_account(acme.pk).marks)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    folding = threading.Thread(target=worker)
    for thread in [folding, *threads]:
        thread.start()
    for thread in threads:
        thread.join()
    writers_done.set()
    folding.join()
    rollup_marks.fold_account(acme.pk)

    assert errors == []
    assert sum(cell[3] for cell in stored(acme).values()) == Lead.objects.filter(account=acme).count() == 60
    assert stored(acme) == recomputed(acme) and marks(acme) == set()


# -- the sweep and the backlog figure ------------------------------------------------------------------------------
def test_the_sweep_folds_every_account_with_marks_and_runs_every_minute(acme, globex):
    meta_lead(acme, phone="+5491155550901")
    meta_lead(globex, phone="+5491155550902")

    summary = fold_all_roi_rollups()

    assert summary == "2 account(s) folded: 2 mark(s), 2 rollup row(s) written"
    assert stored(acme) == recomputed(acme) and stored(globex) == recomputed(globex)
    schedule = Schedule.objects.get(name="marketing.fold_roi_rollups")
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        "marketing.tasks.fold_all_roi_rollups", "I", 1, -1)


def test_readyz_shows_the_marks_waiting_for_a_fold_and_their_age(acme):
    meta_lead(acme, phone="+5491155551001")
    RollupDirtyCell.objects.filter(account=acme).update(marked_at=timezone.now() - dt.timedelta(minutes=3))

    waiting = Client().get("/readyz").json()["checks"]["roi_rollup"]
    rollup_marks.fold_account(acme.pk)
    folded = Client().get("/readyz").json()["checks"]["roi_rollup"]

    assert waiting["ok"] is True and waiting["marks"] == 1 and 180 <= waiting["oldest_mark_age_seconds"] < 240
    assert folded == {"ok": True, "marks": 0, "oldest_mark_age_seconds": None}
