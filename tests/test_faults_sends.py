"""WhatsApp sends while Meta's answers get lost: the sandbox times out, answers a 500, answers JSON cut off
halfway, or drops the connection mid-response.

A send whose POST may have reached Meta is never sent again: it waits as ``unknown`` for the status
webhook (or, after 24 h without one, fails as ``unconfirmed``). A send Meta refused with a 5xx goes back
to the queue and is sent later. Every send ends sent (or further) or with a recorded reason, and the
sandbox's request log holds exactly one accepted POST per send (its ``biz_opaque_callback_data``).
"""
from __future__ import annotations

import datetime as dt
import time
from collections import Counter

import pytest
from django.utils import timezone

from automation.engine import planning
from automation.engine.passes import reconcile, run_pass
from automation.models import MessageSend
from crm_marketing import events
from tests.conftest import make_lead
from tests.fixtures.automation import _no_second_guard, acme_whatsapp, make_rule  # noqa: F401
from tests.fixtures.webhooks import deliver_sandbox_webhooks

pytestmark = pytest.mark.django_db


@pytest.fixture
def impatient(settings):
    settings.META_HTTP_TIMEOUT = 0.5  # the sandbox holds a "timeout" answer for 5 s


def due_sends(account, template, count: int) -> list[MessageSend]:
    """One welcome per new lead, planned and due now, in this order."""
    make_rule(account, template, delays=(1,))
    for n in range(count):
        lead = make_lead(account, first_name=f"Lead {n}", phone=f"+54911700{n:05d}")
        planning.plan_for_event(events.DomainEvent(events.LEAD_CREATED, account.pk, {"lead_id": lead.pk}, id=n + 1))
    MessageSend.objects.update(due_at=timezone.now())
    return list(MessageSend.objects.order_by("due_at", "id"))


def posts(sandbox, *, accepted: bool = False) -> Counter:
    """POSTs to /messages in the sandbox's request log per biz_opaque_callback_data (accepted: Meta took it)."""
    return Counter(r.body.get("biz_opaque_callback_data") for r in sandbox.requests
                   if r.method == "POST" and r.path.endswith("/messages") and (r.status == 200 or not accepted))


def outcome(send: MessageSend) -> tuple:
    send.refresh_from_db()
    return send.status, send.error_title or send.skip_reason


def passes_until(condition, *, bound_seconds: float = 30.0) -> None:
    """Run send passes (as the every-minute schedule would) until ``condition()``; a bound, not a timing."""
    deadline = time.monotonic() + bound_seconds
    while not condition():
        if time.monotonic() > deadline:
            rows = MessageSend.objects.order_by("id").values_list("id", "status", "attempts", "next_attempt_at", "error_details")
            pytest.fail(f"the sends never settled: {list(rows)} at {timezone.now()}")
        run_pass(budget_seconds=1)
        time.sleep(0.2)


def test_five_sends_whose_answers_are_lost_five_ways_each_reach_the_lead_exactly_once(
        acme, acme_whatsapp, meta_sandbox, impatient, client, django_capture_on_commit_callbacks):
    sends = due_sends(acme, acme_whatsapp, 5)
    for kind, processed in (("timeout", True), ("malformed", True), ("drop", True), ("500", True), ("malformed", False)):
        meta_sandbox.fail_next(1, kind=kind, processed=processed, hold_seconds=5, path_contains="/messages")

    first = run_pass(budget_seconds=5)  # the five POSTs leave together: which one meets which fault varies
    after_first_pass = {str(s.pk): outcome(s)[0] for s in sends}
    refused = [s for s in sends if after_first_pass[str(s.pk)] == "queued"]
    with django_capture_on_commit_callbacks(execute=True):  # Meta's status webhooks for what it did take
        assert {r.status_code for r in deliver_sandbox_webhooks(client, meta_sandbox)} == {200}
    passes_until(lambda: all(outcome(s)[0] == "sent" for s in refused))  # once their backoff is over
    with django_capture_on_commit_callbacks(execute=True):
        deliver_sandbox_webhooks(client, meta_sandbox)

    assert first.outcomes == Counter({"unknown": 3, "retry": 2})
    assert sorted(after_first_pass.values()) == ["queued", "queued", "unknown", "unknown", "unknown"]
    assert [outcome(s)[0] for s in sends] == ["read"] * 5
    ids = [str(s.pk) for s in sends]
    assert posts(meta_sandbox, accepted=True) == Counter(ids)  # each taken by Meta once
    assert posts(meta_sandbox) == Counter(ids + [str(s.pk) for s in refused])  # never re-sent once it may have gone


@pytest.mark.parametrize("kind", ["timeout", "drop"])
def test_a_send_lost_before_meta_took_it_waits_unknown_and_a_day_later_fails_as_unconfirmed_never_resent(
        acme, acme_whatsapp, meta_sandbox, impatient, kind):
    [send] = due_sends(acme, acme_whatsapp, 1)
    meta_sandbox.fail_next(1, kind=kind, processed=False, hold_seconds=5, path_contains="/messages")

    run_pass(budget_seconds=5)
    reconcile()
    waiting = outcome(send)
    MessageSend.objects.filter(pk=send.pk).update(claimed_at=timezone.now() - dt.timedelta(hours=25))
    reconcile()  # the hourly reconciliation, a day later
    run_pass(budget_seconds=1)

    assert waiting == ("unknown", "no answer from Meta (timeout or dropped connection)")
    assert outcome(send) == ("failed", "unconfirmed")
    assert posts(meta_sandbox) == Counter({str(send.pk): 1}) and posts(meta_sandbox, accepted=True) == Counter()
