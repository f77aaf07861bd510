"""The Graph client against the Meta sandbox over real loopback HTTP."""
from __future__ import annotations

import json
import logging
import socket

import pytest

from crm_marketing.graph import GraphClient, GraphError, Usage

PHONE_NUMBER_ID = "1300001"


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def token(meta_sandbox) -> str:
    return meta_sandbox.issue_token()


@pytest.fixture
def client(meta_sandbox, token, sleeps) -> GraphClient:
    """Configured from Django settings (which the meta_sandbox fixture points at the sandbox);
    backoff sleeps are recorded instead of waited."""
    return GraphClient(token, sleep=sleeps.append)


def graph_calls(sandbox, path: str) -> list:
    return [r for r in sandbox.requests if r.path == path]


def template_message(name: str = "seguimiento_lead_v1") -> dict:
    return {"messaging_product": "whatsapp", "to": "5491155550001", "type": "template",
            "template": {"name": name, "language": {"code": "es"}}}


def test_two_throttled_answers_then_success_make_one_successful_call(meta_sandbox, client, sleeps):
    meta_sandbox.fail_next(2, status=429, code=17, retry_after=1)

    me = client.get("me", {"fields": "id,name"})

    assert me == {"id": "10001", "name": "Ana Gerente"}
    assert [r.status for r in graph_calls(meta_sandbox, "/me")] == [429, 429, 200]
    assert len(sleeps) == 2 and all(s >= 1 for s in sleeps)  # Retry-After honoured


def test_an_expired_token_is_token_invalid_and_not_retried(meta_sandbox, client, sleeps):
    meta_sandbox.expire_token()

    with pytest.raises(GraphError) as caught:
        client.get("me")

    error = caught.value
    assert error.is_token_invalid and (error.code, error.subcode) == (190, 463)
    assert not error.is_rate_limited
    assert len(graph_calls(meta_sandbox, "/me")) == 1
    assert sleeps == []


def test_a_persistent_server_error_gives_up_after_max_retries_plus_one_tries(meta_sandbox, token, sleeps):
    meta_sandbox.fail_next(10, status=500)
    client = GraphClient(token, max_retries=3, sleep=sleeps.append)

    with pytest.raises(GraphError) as caught:
        client.get("act_300001/campaigns")

    assert caught.value.http_status == 500 and caught.value.is_transient
    assert len(graph_calls(meta_sandbox, "/act_300001/campaigns")) == 4
    assert len(sleeps) == 3 and sleeps[0] < sleeps[1] < sleeps[2]  # exponential backoff


def test_a_post_answered_with_500_is_not_retried(meta_sandbox, client, sleeps):
    meta_sandbox.fail_next(1, status=500, path_contains="/messages")

    with pytest.raises(GraphError) as caught:
        client.post(f"{PHONE_NUMBER_ID}/messages", template_message())

    assert caught.value.http_status == 500
    assert len(graph_calls(meta_sandbox, f"/{PHONE_NUMBER_ID}/messages")) == 1
    assert meta_sandbox.sent_messages == [] and sleeps == []


def test_a_post_that_times_out_is_not_retried(meta_sandbox, token, sleeps):
    meta_sandbox.slow_next(1, seconds=1.0, path_contains="/messages")
    client = GraphClient(token, timeout=0.3, sleep=sleeps.append)

    with pytest.raises(GraphError) as caught:
        client.post(f"{PHONE_NUMBER_ID}/messages", template_message())

    assert caught.value.code is None and caught.value.is_transient and caught.value.sent
    assert len(graph_calls(meta_sandbox, f"/{PHONE_NUMBER_ID}/messages")) == 1
    assert sleeps == []


def test_a_post_is_retried_only_when_the_connection_never_opened(sleeps):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = GraphClient("EAAnobody", base_url=f"http://127.0.0.1:{port}", max_retries=2, sleep=sleeps.append)

    with pytest.raises(GraphError) as caught:
        client.post(f"{PHONE_NUMBER_ID}/messages", template_message())

    assert caught.value.network and not caught.value.sent
    assert len(sleeps) == 2


def test_a_read_timeout_on_a_get_is_retried(meta_sandbox, token, sleeps):
    meta_sandbox.slow_next(1, seconds=1.0, path_contains="/me")
    client = GraphClient(token, timeout=0.3, sleep=sleeps.append)

    assert client.get("me")["id"] == "10001"
    assert len(graph_calls(meta_sandbox, "/me")) == 2 and len(sleeps) == 1


def test_get_all_follows_paging_next_over_three_pages(meta_sandbox, client):
    accounts = client.get_all("me/adaccounts", {"fields": "id,currency", "limit": 1})

    assert accounts == [{"id": "act_300001", "currency": "ARS"}, {"id": "act_300002", "currency": "USD"},
                        {"id": "act_300003", "currency": "EUR"}]
    calls = graph_calls(meta_sandbox, "/me/adaccounts")
    assert [c.query.get("after") for c in calls] == [None, "MA", "MQ"]
    assert all(c.version == "v26.0" for c in calls)


def test_the_token_travels_only_in_the_authorization_header_even_on_next_pages(meta_sandbox, client, token):
    pages = list(client.iter_pages("me/adaccounts", {"limit": 1}))
    # Real Meta (and the sandbox) put access_token into paging.next; the client must strip it.
    first_page = client.get("me/adaccounts", {"limit": 1})
    assert "access_token=" + token in first_page["paging"]["next"]

    assert len(pages) == 3
    for request in meta_sandbox.requests:
        assert request.headers["Authorization"] == f"Bearer {token}"
        assert token not in request.path
        assert "access_token" not in request.query
        assert all(token not in value for value in request.query.values())
        assert request.body is None or token not in json.dumps(request.body)


def test_a_next_url_with_a_token_and_a_foreign_host_is_stripped_and_rebased(meta_sandbox, client):
    next_url = "https://graph.meta.example.invalid/v26.0/me/adaccounts?fields=id&limit=1&after=MQ&access_token=EAAleaked"

    page = client.get(next_url, next_link=True)

    assert page["data"] == [{"id": "act_300003"}]
    [call] = graph_calls(meta_sandbox, "/me/adaccounts")
    assert call.query == {"fields": "id", "limit": "1", "after": "MQ", "appsecret_proof": client.appsecret_proof()}


def test_logs_and_error_text_of_a_failing_call_never_contain_the_token(meta_sandbox, client, token, caplog):
    caplog.set_level(logging.DEBUG)
    meta_sandbox.fail_next(1, status=400, code=190, message=f"Error validating access token {token}",
                           path_contains="/me/businesses")
    client.get_all("me/adaccounts", {"limit": 1})

    with pytest.raises(GraphError) as caught:
        client.get_all("me/businesses", {"limit": 1})
    with pytest.raises(GraphError) as caught_next:
        meta_sandbox.fail_next(1, status=503)
        GraphClient(token, max_retries=0).get("act_300001/ads")

    assert caplog.records, "the client logs its calls"
    for error in (caught.value, caught_next.value):
        assert token not in str(error) and token not in repr(error) and token not in error.message
    assert token not in caplog.text
    assert "graph GET /v26.0/me/adaccounts -> 200" in caplog.text


def test_usage_parses_the_sample_headers_and_tolerates_junk():
    sample = {
        "X-App-Usage": '{"call_count":28,"total_time":25,"total_cputime":25}',
        "X-Ad-Account-Usage": '{"acc_id_util_pct":9.67,"reset_time_duration":0,"ads_api_access_tier":"standard_access"}',
        "X-Business-Use-Case-Usage": '{"1234567890":[{"type":"ads_insights","call_count":92,"total_cputime":11,'
                                     '"total_time":14,"estimated_time_to_regain_access":12}]}',
        "Content-Type": "application/json",
    }

    usage = Usage.parse(sample)

    assert (usage.app_pct, usage.ad_account_pct, usage.regain_seconds) == (28.0, 9.67, 720)
    assert set(usage.raw) == {"x-app-usage", "x-ad-account-usage", "x-business-use-case-usage"}
    junk = Usage.parse({"X-App-Usage": "nope", "X-Ad-Account-Usage": "[1]",
                        "X-Business-Use-Case-Usage": '{"1": "x", "2": [null, {"estimated_time_to_regain_access": "?"}]}'})
    assert (junk.app_pct, junk.ad_account_pct, junk.regain_seconds) == (0.0, 0.0, 0)
    assert Usage.parse(None).regain_seconds == 0


def test_a_scripted_throttle_sets_regain_seconds_and_the_backoff_waits_for_it(meta_sandbox, token, sleeps, settings):
    settings.META_MAX_BACKOFF_SECONDS = 600
    client = GraphClient(token, sleep=sleeps.append)
    meta_sandbox.fail_next(1, status=400, code=80000, regain_minutes=2, path_contains="/insights")

    rows = client.get("act_300001/insights", {"level": "campaign"})["data"]

    assert rows and sleeps == [120]
    assert client.last_usage is not None and client.last_usage.regain_seconds == 0
    assert client.last_usage.ad_account_pct < 100


def test_a_throttle_beyond_the_backoff_cap_raises_at_once_without_sleeping(meta_sandbox, token, sleeps, settings):
    settings.META_MAX_BACKOFF_SECONDS = 30
    client = GraphClient(token, sleep=sleeps.append)
    meta_sandbox.fail_next(1, status=400, code=17, regain_minutes=5)

    with pytest.raises(GraphError) as caught:
        client.get("act_300001/campaigns")

    error = caught.value
    assert error.is_rate_limited and error.retry_after == 300
    assert error.usage is not None and error.usage.regain_seconds == 300 and error.usage.app_pct == 100
    assert sleeps == [] and len(graph_calls(meta_sandbox, "/act_300001/campaigns")) == 1


def test_a_non_json_answer_becomes_a_graph_error(meta_sandbox, client):
    with pytest.raises(GraphError) as caught:
        client.get("dialog/oauth", {"client_id": "wrong"})

    assert caught.value.http_status == 400 and caught.value.code is None
    assert "non-JSON" in str(caught.value)


def test_meta_error_fields_are_exposed_on_graph_error(meta_sandbox, client):
    with pytest.raises(GraphError) as caught:
        client.post(f"{PHONE_NUMBER_ID}/messages", template_message("promo_black_friday"))

    error = caught.value
    assert (error.http_status, error.code, error.is_transient, error.is_rate_limited) == (400, 132001, False, False)
    assert error.fbtrace_id and "Template name does not exist" in error.message


def test_the_app_client_authenticates_debug_token_with_the_app_token(meta_sandbox, token):
    data = GraphClient.app().get("debug_token", {"input_token": token})["data"]

    assert data["is_valid"] and data["user_id"] == "10001" and data["app_id"] == meta_sandbox.app_id
    [call] = graph_calls(meta_sandbox, "/debug_token")
    assert call.headers["Authorization"] == f"Bearer {meta_sandbox.app_id}|{meta_sandbox.app_secret}"


def test_a_host_behind_an_egress_proxy_sends_graph_calls_through_it_unless_no_proxy_names_graph(monkeypatch):
    # The session reads the proxy environment once (requests would re-read it on every call). No call is made:
    # the Graph host here is the sandbox's loopback address.
    graph = "http://127.0.0.1:8765"
    monkeypatch.setenv("HTTP_PROXY", "http://egress.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert GraphClient("t", base_url=graph).session.proxies.get("http") == "http://egress.internal:3128"

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert not GraphClient("t", base_url=graph).session.proxies
