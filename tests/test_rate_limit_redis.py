"""The API's rate limit on the production cache (django-redis on a Redis of the test's own): each request is
counted in one round trip (a Lua INCR that gives a new counter its window's expiry), per caller."""
from __future__ import annotations

import time

import pytest
import redis

from tests.fixtures.redis_server import own_redis  # noqa: F401
from tests.test_faults_redis import redis_cache  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


def counters(server) -> dict[str, int]:
    """Every rate-limit counter in the cache's Redis database, with its time to live in seconds."""
    client = redis.Redis.from_url(server.url(1))
    return {key.decode(): client.ttl(key) for key in client.scan_iter(match="*rl:*")}


@pytest.mark.parametrize("rate", ["3/m", "3/min", "3/60s"])  # every spelling django-ratelimit reads as 3 a minute
def test_alice_is_limited_after_three_calls_and_her_counter_expires_with_its_window(alice_api, acme, redis_cache, settings, rate):  # noqa: F811
    settings.API_RATE_LIMIT = rate

    statuses = [alice_api.get("/crm/me").status_code for _ in range(4)]
    limited = alice_api.get("/crm/me")

    assert statuses == [200, 200, 200, 429]
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert limited.json()["error"]["code"] == "rate_limited"
    ttls = counters(redis_cache)
    assert ttls and all(0 < ttl <= 61 for ttl in ttls.values())  # no counter is kept beyond its window


def test_a_limited_caller_is_let_in_again_when_the_window_is_over(alice_api, acme, redis_cache, settings):  # noqa: F811
    settings.API_RATE_LIMIT = "2/s"
    statuses: list[int] = []
    while 429 not in statuses and len(statuses) < 50:  # the third call of a second, however slow the host
        statuses.append(alice_api.get("/crm/me").status_code)
    assert statuses[-1] == 429

    second = int(time.time())
    while int(time.time()) == second:
        time.sleep(0.02)

    assert alice_api.get("/crm/me").status_code == 200


def test_alice_reaching_her_limit_leaves_mallory_and_bob_theirs(alice_api, bob_api, mallory_api, acme, globex, redis_cache, settings):  # noqa: F811
    settings.API_RATE_LIMIT = "2/m"
    for _ in range(3):
        alice_api.get("/crm/me")

    assert alice_api.get("/crm/me").status_code == 429
    assert mallory_api.get("/crm/me").status_code == 200
    assert bob_api.get("/crm/me").status_code == 200

