"""Exactly once under concurrency and crashes, and the shared throughput limiter.

Workers race on the same due sends from separate threads (separate database connections); a
worker is SIGKILLed in the middle of a POST and its pass run again; the limiter holds a number's
rate across two workers, checked against the sandbox's own per-second count.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connection, connections
from django.utils import timezone

from automation.engine import claiming, limiter, planning
from automation.engine.passes import run_pass
from automation.models import MessageSend
from crm_marketing import events
from crm_marketing.sandbox.webhooks import status_event, statuses_payload
from tests.conftest import make_lead
from tests.fixtures.automation import make_channel, make_rule, make_template
from tests.fixtures.webhooks import connect_meta, post_signed

ROOT = Path(__file__).resolve().parent.parent


def wait_for(condition, seconds: float = 120.0) -> None:
    """Poll until ``condition()`` holds (a bound against hanging, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the condition never held")
        time.sleep(0.05)


def plan_leads(account, template, count: int) -> list[MessageSend]:
    """``count`` sends planned one minute ahead (so planning queues no pass), then made due."""
    make_rule(account, template, delays=(1,))
    for n in range(count):
        lead = make_lead(account, phone=f"+54911600{n:05d}")
        planning.plan_for_event(events.DomainEvent(events.LEAD_CREATED, account.pk, {"lead_id": lead.pk}, id=n + 1))
    MessageSend.objects.update(due_at=timezone.now())
    return list(MessageSend.objects.all())


def callback_counts(sandbox) -> Counter:
    return Counter(m.get("biz_opaque_callback_data") for m in sandbox.sent_messages if m.get("type") == "template")


def in_threads(target, count: int) -> None:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run():
        try:
            barrier.wait()
            target()
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.fixture
def acme_live(acme, meta_sandbox):
    connect_meta(acme, meta_sandbox)
    make_channel(acme)
    return make_template(acme)


@pytest.mark.django_db(transaction=True)
def test_four_workers_racing_on_the_same_due_sends_send_each_exactly_once(acme, acme_live, meta_sandbox):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers; the race is PostgreSQL's (the conditional update is tested there too)")
    sends = plan_leads(acme, acme_live, 24)

    in_threads(lambda: run_pass(budget_seconds=60, batch=5), 4)

    assert callback_counts(meta_sandbox) == Counter({str(s.pk): 1 for s in sends})
    assert set(MessageSend.objects.values_list("status", flat=True)) == {"sent"}


@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_one_due_send_with_the_conditional_update_get_it_once(acme, acme_live):
    if connection.vendor == "sqlite":  # shared-cache SQLite answers SQLITE_LOCKED at once instead of waiting
        pytest.skip("SQLite serialises writers without a busy wait; the conditional update's race is PostgreSQL's")
    plan_leads(acme, acme_live, 1)
    claimed: list[list[int]] = []

    in_threads(lambda: claimed.append(claiming.claim_batch(limit=10).ids), 2)

    assert sorted(len(ids) for ids in claimed) == [0, 1]


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_send_and_its_pass_run_again_sends_the_message_once(acme, acme_live, meta_sandbox, client):
    name = connection.settings_dict["NAME"]
    if connection.vendor != "postgresql":
        pytest.skip("the worker subprocess needs a database it can open by URL (the PostgreSQL test database)")
    [send] = plan_leads(acme, acme_live, 1)
    meta_sandbox.slow_next(1, seconds=3, path_contains="/messages")
    env = dict(os.environ, DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{name}", META_GRAPH_URL=meta_sandbox.base_url,
               Q_SYNC="true", DEBUG="true")
    worker = subprocess.Popen([sys.executable, "manage.py", "run_automation", "--account", "acme"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: any(r.method == "POST" and r.path.endswith("/messages") for r in meta_sandbox.requests))
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    wait_for(lambda: len(meta_sandbox.sent_messages) == 1)  # Meta got it although the worker never heard back

    run_pass(budget_seconds=1)  # the task re-delivered: the send may have reached Meta, so it is not sent again
    claiming.expire_abandoned(now=timezone.now() + 2 * claiming.lease())
    run_pass(budget_seconds=1)
    assert MessageSend.objects.values_list("status", flat=True).get() == "unknown"
    wamid = meta_sandbox.sent_messages[0]["wamid"]
    response = post_signed(client, statuses_payload([status_event(wamid, "delivered", "5491160000000", str(send.pk))]))

    assert response.status_code == 200
    assert callback_counts(meta_sandbox) == Counter({str(send.pk): 1})
    assert MessageSend.objects.values_list("status", "meta_message_id").get() == ("delivered", wamid)


@pytest.mark.django_db(transaction=True)
def test_sends_a_dead_worker_claimed_but_never_posted_go_back_to_the_queue_after_the_lease(acme, acme_live, meta_sandbox):
    sends = plan_leads(acme, acme_live, 3)
    assert len(claiming.claim_batch(limit=10).ids) == 3  # ... and the worker dies before its first POST

    run_pass(budget_seconds=1)  # within the lease: still its
    assert callback_counts(meta_sandbox) == Counter()
    assert claiming.expire_abandoned(now=timezone.now() + 2 * claiming.lease()) == 3
    run_pass(budget_seconds=5)

    assert callback_counts(meta_sandbox) == Counter({str(s.pk): 1 for s in sends})


# -- the limiter -------------------------------------------------------------------------------------------------
@pytest.fixture(params=["database", "redis"])
def limiter_backend(request, settings, db):
    if request.param == "redis":
        import redis

        url = "redis://127.0.0.1:6379/14"
        try:
            redis.Redis.from_url(url).flushdb()
        except redis.RedisError:
            pytest.skip("no Redis on 127.0.0.1:6379")
        settings.Q_BROKER_URL = url
    else:
        settings.Q_BROKER_URL = ""
    settings.AUTOMATION_THROUGHPUT_HEADROOM = 1.0
    return request.param


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_at: float = 0.0
    reason: str = ""


def acquire(phone_number_id: str, throughput_mps: int, recipient: str, *, now: float) -> Decision:
    """One new send's slots, taken the way the sender takes a batch's (a batch of one)."""
    reservation = limiter.reserve({phone_number_id: limiter.Ask(0, 1, throughput_mps)}, now=now)
    if reservation.late:
        return Decision(False, float(reservation.second + 1), "late")
    turns = reservation.turns[phone_number_id]
    if not turns.new:
        return Decision(False, turns.new_from, "throughput")
    [free_at] = limiter.take_pairs([(phone_number_id, recipient)], now=now)
    if free_at:
        limiter.give_back(reservation.second, {phone_number_id: 1})
        return Decision(False, free_at, "pair_rate")
    return Decision(True)


def test_the_limiter_gives_a_number_its_rate_per_second_and_a_recipient_one_message_per_six_seconds(limiter_backend):
    second = 1_900_000_000.0 + (0 if limiter_backend == "database" else 1000)
    decisions = [acquire("1300001", 3, f"54911{n}", now=second + n * 0.1) for n in range(4)]
    next_second = acquire("1300001", 3, "549110", now=second + 1.2)
    other_number = acquire("1300002", 3, "549110", now=second + 0.5)
    after_six = acquire("1300001", 3, "549110", now=second + 6.1)

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert (decisions[3].reason, decisions[3].retry_at) == ("throughput", second + 1)
    assert (next_second.allowed, next_second.reason, next_second.retry_at) == (False, "pair_rate", pytest.approx(second + 6))
    assert other_number.allowed and after_six.allowed


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_send_more_than_the_numbers_rate_in_any_second_of_the_sandbox(acme, meta_sandbox, settings):
    if connection.vendor == "sqlite":
        pytest.skip("the in-memory SQLite test database locks tables between threads; the limiter's SQL is tested above")
    settings.AUTOMATION_THROUGHPUT_HEADROOM = 1.0
    connect_meta(acme, meta_sandbox)
    make_channel(acme, throughput_mps=10)
    sends = plan_leads(acme, make_template(acme), 45)

    in_threads(lambda: run_pass(budget_seconds=30, batch=20), 2)

    assert callback_counts(meta_sandbox) == Counter({str(s.pk): 1 for s in sends})
    assert 0 < meta_sandbox.max_sends_per_second("1300001") <= 10  # the sandbox itself allows 80/s
