"""The send engine's batch paths: one claimed batch handled together (re-checks, limiter, POSTs,
outcomes), workers racing on batches over several numbers, and the limiter's queue of turns."""
from __future__ import annotations

import datetime as dt
import time
from collections import Counter

import pytest
from django.db import connection
from django.utils import timezone

from automation.engine import claiming, limiter, outcomes, planning
from automation.engine.outcomes import Outgoing
from automation.engine.passes import run_pass
from automation.engine.sender import LATE, SendSession, send_batch
from automation.models import MessageSend
from crm_marketing import events
from tests.conftest import make_lead, make_opportunity
from tests.fixtures.automation import _no_second_guard, acme_whatsapp, make_channel, make_rule, make_template  # noqa: F401
from tests.fixtures.webhooks import connect_meta
from tests.test_automation_engine_concurrency import callback_counts, in_threads, limiter_backend  # noqa: F401


def plan_welcome(lead, event_id: int) -> None:
    planning.plan_for_event(events.DomainEvent(events.LEAD_CREATED, lead.account_id, {"lead_id": lead.pk}, id=event_id))


def test_one_claimed_batch_ends_each_send_its_own_way_and_only_the_sendable_ones_reach_meta(acme, acme_whatsapp, meta_sandbox):
    make_rule(acme, acme_whatsapp, name="Welcome", delays=(0,))
    make_rule(acme, acme_whatsapp, name="Brochure", delays=(0,), conditions={"lead_statuses": ["new"]})
    maria = make_lead(acme, first_name="María", phone="+5491155550001")  # both rules: the second waits 6 s
    opted_out = make_lead(acme, phone="+5491155550002", opted_out_at=timezone.now())
    won = make_lead(acme, phone="+5491155550003")
    make_opportunity(won, stage="won")
    for n, lead in enumerate((maria, opted_out, won), start=1):
        plan_welcome(lead, n)
    claim = claiming.claim_batch(limit=10)
    session = SendSession()

    try:
        result = send_batch(claim, session)
    finally:
        session.close()

    rows = {(s.lead_id, s.rule_name): s for s in MessageSend.objects.all()}
    assert len(claim.ids) == 6
    assert result.outcomes == Counter(sent=1, skipped=4, retry=1)
    assert [(s.status, s.skip_reason) for s in (rows[opted_out.pk, "Welcome"], rows[opted_out.pk, "Brochure"])] == \
        [("skipped", "opted_out")] * 2
    assert [(s.status, s.skip_reason) for s in (rows[won.pk, "Welcome"], rows[won.pk, "Brochure"])] == \
        [("skipped", "opportunity_won")] * 2
    first, second = sorted((rows[maria.pk, "Welcome"], rows[maria.pk, "Brochure"]), key=lambda s: s.status)
    assert (first.status, second.status) == ("queued", "sent")
    assert first.next_attempt_at >= second.sent_at + dt.timedelta(seconds=limiter.PAIR_SECONDS - 0.5)
    assert (first.attempts, first.claimed_at) == (0, None)
    assert [m["biz_opaque_callback_data"] for m in meta_sandbox.sent_messages] == [str(second.pk)]
    assert second.meta_message_id == meta_sandbox.sent_messages[0]["wamid"]
    assert second.parameters == meta_sandbox.sent_messages[0]["template"]["components"]


def test_a_lead_at_its_daily_cap_gets_one_of_two_sends_due_in_the_same_batch(acme, acme_whatsapp, meta_sandbox):
    make_rule(acme, acme_whatsapp, name="Welcome", max_sends_per_lead_per_day=1)
    make_rule(acme, acme_whatsapp, name="Brochure", max_sends_per_lead_per_day=1, conditions={"lead_statuses": ["new"]})
    plan_welcome(make_lead(acme, phone="+5491155550001"), 1)

    run_pass(budget_seconds=5, batch=10)

    assert sorted(MessageSend.objects.values_list("status", "skip_reason")) == [("sent", ""), ("skipped", "cap_reached")]
    assert len(meta_sandbox.sent_messages) == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_on_batches_over_two_numbers_send_each_message_once_within_each_numbers_rate(
        acme, globex, meta_sandbox, settings):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers; the race between claimers is PostgreSQL's")
    settings.AUTOMATION_THROUGHPUT_HEADROOM = 1.0
    settings.AUTOMATION_SECOND_GUARD = 0.1  # production's: a request must leave 100 ms before its second ends
    meta_sandbox.add_phone_number("1300002")
    sends = []
    for account, phone_number_id, prefix in ((acme, "1300001", "+54911600"), (globex, "1300002", "+54911700")):
        connect_meta(account, meta_sandbox, phone_number_id=phone_number_id, page_id=None, ad_account=None)
        make_channel(account, phone_number_id=phone_number_id, throughput_mps=8)
        make_rule(account, make_template(account), delays=(1,))
        for n in range(30):
            plan_welcome(make_lead(account, phone=f"{prefix}{n:05d}"), 1000 * account.pk + n)
    MessageSend.objects.update(due_at=timezone.now())
    sends = list(MessageSend.objects.all())

    in_threads(lambda: run_pass(budget_seconds=60, batch=12), 2)

    assert callback_counts(meta_sandbox) == Counter({str(s.pk): 1 for s in sends})
    assert set(MessageSend.objects.values_list("status", flat=True)) == {"sent"}
    assert 0 < meta_sandbox.max_sends_per_second("1300001") <= 8
    assert 0 < meta_sandbox.max_sends_per_second("1300002") <= 8


def test_the_limiter_serves_a_numbers_waiting_sends_first_and_queues_new_ones_behind_them(limiter_backend):
    second = 1_900_000_000.0 + (0 if limiter_backend == "database" else 2000)
    burst = limiter.reserve({"1300001": limiter.Ask(0, 5, 2)}, now=second)
    newcomer = limiter.reserve({"1300001": limiter.Ask(0, 1, 2)}, now=second + 0.5)
    next_second = limiter.reserve({"1300001": limiter.Ask(2, 1, 2)}, now=second + 1.1)
    other_number = limiter.reserve({"1300002": limiter.Ask(0, 3, 2)}, now=second + 0.2)

    turns = burst.turns["1300001"]
    assert (turns.new, [turns.new_from + n * turns.step for n in range(3)]) == \
        (2, [pytest.approx(second + t, abs=1e-3) for t in (1.0, 1.5, 2.0)])
    assert (newcomer.turns["1300001"].new, newcomer.turns["1300001"].new_from) == (0, pytest.approx(second + 2.5, abs=1e-3))
    # In the next second the two that waited go first; the new one waits behind everyone queued.
    assert (next_second.turns["1300001"].retrying, next_second.turns["1300001"].new) == (2, 0)
    assert next_second.turns["1300001"].new_from == pytest.approx(second + 3.0, abs=1e-3)
    assert other_number.turns["1300002"].new == 2  # a number without a queue: its whole second is the new sends'
    assert other_number.turns["1300002"].new_from == pytest.approx(second + 1, abs=1e-3)


def test_a_post_whose_thread_starts_after_its_slots_second_is_not_made_and_its_send_goes_back_to_sending(
        acme, acme_whatsapp, meta_sandbox):
    """A busy host: the chunk passed its check, but a thread got the CPU after the second was over."""
    make_rule(acme, acme_whatsapp, delays=(0,))
    plan_welcome(make_lead(acme, phone="+5491155550001"), 1)
    claim = claiming.claim_batch(limit=10)
    send = MessageSend.objects.select_related("lead", "account", "rule", "template", "step").get()
    out = Outgoing(send, 0, "1300001", 80, "5491155550001", [], {"messaging_product": "whatsapp"})
    MessageSend.objects.update(status=MessageSend.Status.UNKNOWN)  # as mark_unknown leaves it before the POSTs
    session = SendSession()
    session.connected(acme.pk)

    try:
        [(_, answer, _)] = session.post_all([out], limiter.Reservation(second=int(time.time()) - 2))
    finally:
        session.close()

    assert answer is LATE
    assert meta_sandbox.sent_messages == []
    assert outcomes.unmark_unknown([out], claim.at) == [out]
    assert MessageSend.objects.get().status == "sending"  # sent later with a slot of its own second, never unknown
