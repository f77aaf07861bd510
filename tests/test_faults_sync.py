"""A Marketing API sync while Meta's answers get lost: the sandbox times out, answers a 500, answers JSON
cut off halfway, or drops the connection mid-response, at each step of a sync (the entity listings'
batch, the POST that starts the insights report, its poll, its result page).

One lost answer is retried inside the run, which completes with Meta's figures. A step that keeps
failing fails the run with the reason and writes no partial rows; the schedule tries again 5 minutes
later (then 15, then 45: FAILED_RETRY_BACKOFF) and that run completes.
"""
from __future__ import annotations

import datetime as dt

import pytest

from crm_marketing.graph import GraphClient
from marketing.models import Ad, AdSet, Campaign, DailyInsight, SyncRun
from marketing.services.runs import FAILED_RETRY_BACKOFF, due_ad_accounts, queue_due_syncs
from marketing.services.sync import sync_ad_account
from tests.factories import metas_figures, stored_figures
from tests.test_sync import FAST, ad_account, connection, meta_token  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db
KINDS = ["timeout", "500", "malformed", "drop"]
# Where a fault lands (path_contains): a batch fails as a whole when one of its calls matches. The first
# report run of a reset sandbox is 6000001: polled at /6000001, read at /6000001/insights.
STEPS = {"entity batch": "act_300001/adsets", "report start": "act_300001/insights", "report poll": "/6000001",
         "report page": "6000001/insights"}


@pytest.fixture
def impatient(settings):
    """A client that gives up on an answer after half a second (the sandbox holds a "timeout" for 5 s)."""
    settings.META_HTTP_TIMEOUT = 0.5
    settings.META_INSIGHTS_POLL_SECONDS = 0.001


def fail(sandbox, kind: str, step: str, n: int = 1) -> None:
    sandbox.fail_next(n, kind=kind, path_contains=STEPS[step], hold_seconds=5)


def entity_counts() -> tuple[int, int, int]:
    return Campaign.objects.count(), AdSet.objects.count(), Ad.objects.count()


@pytest.mark.parametrize("step", list(STEPS))
@pytest.mark.parametrize("kind", KINDS)
def test_one_lost_answer_at_any_step_is_retried_within_the_run_which_completes_with_metas_figures(
        ad_account, meta_sandbox, meta_token, impatient, kind, step):  # noqa: F811
    fail(meta_sandbox, kind, step)

    result = sync_ad_account(ad_account, client=GraphClient(meta_token, sleep=lambda s: None),
                             kind=SyncRun.Kind.FULL, backfill_seconds=0, **FAST)

    run = SyncRun.objects.get()
    assert meta_sandbox.pending_faults() == 0  # the fault happened, and the run went on
    assert (result.status, run.status, run.error) == ("succeeded", "succeeded", "")
    assert entity_counts() == (3, 4, 5)
    assert stored_figures(ad_account) == metas_figures(meta_sandbox, run) != {}


PERSISTENT = [("timeout", "entity batch", "network error: ReadTimeout"), ("500", "report start", "HTTP 500"),
              ("malformed", "report poll", "non-JSON response"), ("drop", "report page", "network error: ChunkedEncodingError")]


@pytest.mark.parametrize("kind, step, reason", PERSISTENT, ids=[f"{k} at {s}" for k, s, _ in PERSISTENT])
def test_a_step_that_keeps_failing_fails_the_run_without_partial_rows_and_the_schedule_resumes_it_5_minutes_later(
        ad_account, meta_sandbox, impatient, settings, django_capture_on_commit_callbacks, kind, step, reason):  # noqa: F811
    settings.META_MAX_RETRIES = 1
    fail(meta_sandbox, kind, step, n=1000)  # Meta keeps failing that step until it recovers below

    with django_capture_on_commit_callbacks(execute=True):
        [first] = queue_due_syncs()  # the scheduled tick (django-q2 runs the queued task inline in tests)

    first.refresh_from_db()
    ad_account.refresh_from_db()
    assert first.status == "failed" and reason in first.error
    assert DailyInsight.objects.count() == 0  # nothing half-read: the first report never completed
    assert entity_counts() == ((0, 0, 0) if step == "entity batch" else (3, 4, 5))  # listings land all at once
    assert (ad_account.last_synced_at, ad_account.backfilled_since) == (None, None)

    meta_sandbox.clear_scripts()  # Meta answers again
    retry_at = first.finished_at + FAILED_RETRY_BACKOFF[0]
    assert FAILED_RETRY_BACKOFF[0] == dt.timedelta(minutes=5)
    assert due_ad_accounts(now=retry_at - dt.timedelta(seconds=1)) == []
    with django_capture_on_commit_callbacks(execute=True):
        [second] = queue_due_syncs(now=retry_at)

    second.refresh_from_db()
    ad_account.refresh_from_db()
    assert (second.status, second.error) == ("succeeded", "")
    assert entity_counts() == (3, 4, 5)
    assert stored_figures(ad_account) == metas_figures(meta_sandbox, second) != {}
    assert ad_account.last_synced_at is not None
