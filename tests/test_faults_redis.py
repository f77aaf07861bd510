"""Redis restarts under the production settings: the cache that holds the rate-limit counters and the
send limiter on a Redis of the test's own (tests/fixtures/redis_server.py), killed and started again
empty. The API and the webhook intake keep answering (never a 500); no send is lost, none goes out
twice (the sandbox's request log, per biz_opaque_callback_data), and what was in flight recovers.
A task the broker lost (Redis restarted under it) is the last case here; the django-q2 broker on a
real Redis, with a web server and a qcluster, is tests/test_faults_redis_broker.py.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter

import pytest
from django.utils import timezone

from automation.engine import planning
from automation.engine.passes import run_pass
from automation.models import MessageSend
from crm_marketing import events
from crm_marketing.models import WebhookEvent
from crm_marketing.sandbox import leadgen_payload
from marketing.models import SyncRun
from marketing.services.runs import REQUEUE_AFTER, queue_due_syncs
from tests.conftest import make_lead
from tests.fixtures.automation import _no_second_guard, acme_whatsapp, make_rule  # noqa: F401
from tests.fixtures.redis_server import own_redis  # noqa: F401
from tests.fixtures.webhooks import post_signed
from tests.test_sync_endpoint import URL as SYNC_URL
from tests.test_sync_endpoint import ad_account, connection  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_cache(own_redis, settings):  # noqa: F811
    """The production cache: django-redis with the short socket timeouts settings.py gives it."""
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": own_redis.url(1),
                                   "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2}}}
    return own_redis


@pytest.fixture
def redis_limiter(own_redis, settings):  # noqa: F811
    settings.Q_BROKER_URL = own_redis.url(0)  # the send limiter uses Redis when the broker does
    return own_redis


def statuses(client_calls) -> list[int]:
    return [call().status_code for call in client_calls]


def test_the_api_and_the_webhook_intake_answer_while_redis_is_down_and_limit_again_once_it_is_back(
        alice_api, client, acme, redis_cache, settings):
    settings.API_RATE_LIMIT = "3/m"
    me = lambda: alice_api.get("/crm/me")  # noqa: E731
    webhook = lambda: post_signed(client, leadgen_payload("810001", "900001", "700001"))  # noqa: E731

    before = statuses([me, webhook])
    redis_cache.kill()
    while_down = statuses([me, me, me, me, webhook])
    redis_cache.start()  # empty: the counters start over
    after = statuses([me, me, me, me])

    assert before == [200, 200]
    assert while_down == [200, 200, 200, 200, 200]  # let through uncounted while the counters are unreachable
    assert after == [200, 200, 200, 429]
    assert WebhookEvent.objects.count() == 1  # the delivery while Redis was down is stored (once)


def test_signing_in_while_redis_is_down_is_a_503_with_retry_after_never_an_unlimited_guess(client, alice, redis_cache):
    redis_cache.kill()
    down = client.post("/accounts/login/", {"username": "alice", "password": "pw-alice"})
    redis_cache.start()
    back = client.post("/accounts/login/", {"username": "alice", "password": "pw-alice"})

    assert (down.status_code, down["Retry-After"], down.json()["error"]["code"]) == (503, "5", "rate_limits_unavailable")
    assert (back.status_code, back["Location"]) == (302, "/hub/")  # signed in


def due_sends(account, template, count: int) -> list[MessageSend]:
    make_rule(account, template, delays=(1,))
    for n in range(count):
        lead = make_lead(account, phone=f"+54911710{n:05d}")
        planning.plan_for_event(events.DomainEvent(events.LEAD_CREATED, account.pk, {"lead_id": lead.pk}, id=n + 1))
    MessageSend.objects.update(due_at=timezone.now())
    return list(MessageSend.objects.order_by("due_at", "id"))


def accepted(sandbox) -> Counter:
    return Counter(r.body.get("biz_opaque_callback_data") for r in sandbox.requests
                   if r.method == "POST" and r.path.endswith("/messages") and r.status == 200)


def test_redis_restarted_in_the_middle_of_a_send_pass_loses_no_send_and_sends_none_twice(
        acme, acme_whatsapp, meta_sandbox, redis_limiter):
    sends = due_sends(acme, acme_whatsapp, 6)
    meta_sandbox.slow_next(1, seconds=1, path_contains="/messages")  # the first POST is in flight ...
    first_post = lambda: any(r.path.endswith("/messages") for r in list(meta_sandbox.requests))  # noqa: E731
    restarter = threading.Thread(target=lambda: (_wait(first_post), redis_limiter.restart()))
    restarter.start()  # ... when Redis dies and comes back empty

    result = run_pass(budget_seconds=20)
    restarter.join()

    assert result.outcomes["sent"] == 6
    assert accepted(meta_sandbox) == Counter(str(s.pk) for s in sends)
    assert set(MessageSend.objects.values_list("status", flat=True)) == {"sent"}


def test_a_send_pass_while_redis_is_down_sends_nothing_uncounted_and_everything_once_redis_is_back(
        acme, acme_whatsapp, meta_sandbox, redis_limiter):
    sends = due_sends(acme, acme_whatsapp, 3)
    redis_limiter.kill()

    down = run_pass(budget_seconds=5)
    after_down = Counter(MessageSend.objects.values_list("status", flat=True))
    redis_limiter.start()
    MessageSend.objects.update(next_attempt_at=timezone.now())  # the retry time the pass gave them has come
    back = run_pass(budget_seconds=20)

    assert (down.outcomes, after_down) == (Counter({"retry": 3}), Counter({"queued": 3}))
    assert accepted(meta_sandbox) == Counter(str(s.pk) for s in sends)
    assert back.outcomes["sent"] == 3 and set(MessageSend.objects.values_list("status", flat=True)) == {"sent"}


def _wait(condition, bound_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + bound_seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)




def test_a_sync_whose_task_the_broker_lost_is_queued_again_by_the_schedule_5_minutes_later(
        alice_api, ad_account, django_capture_on_commit_callbacks):  # noqa: F811
    with django_capture_on_commit_callbacks(execute=False):  # Redis restarts: the queued task is gone
        asked = alice_api.post(SYNC_URL)
    run = SyncRun.objects.get()
    blocked = alice_api.post(SYNC_URL)

    with django_capture_on_commit_callbacks(execute=True):  # the 15-minute tick, just before ...
        queue_due_syncs(now=run.created_at + REQUEUE_AFTER - dt.timedelta(seconds=1))
    waiting = SyncRun.objects.get().status
    with django_capture_on_commit_callbacks(execute=True):  # ... and once the run has waited 5 minutes
        queue_due_syncs(now=run.created_at + REQUEUE_AFTER)

    assert (asked.status_code, blocked.status_code, waiting) == (202, 409, "queued")
    assert REQUEUE_AFTER == dt.timedelta(minutes=5)
    assert list(SyncRun.objects.values_list("pk", "status")) == [(run.pk, "succeeded")]
