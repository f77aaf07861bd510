"""The sandbox's WhatsApp side: assets the token sees, subscriptions, sends under Meta's limits, and the
status / preference / template webhooks it emits."""
from __future__ import annotations

import json
import time

import pytest
import requests

from crm_marketing.graph import GraphClient, GraphError
from tests.fixtures.webhooks import acme_meta  # noqa: F401
from tests.test_sandbox import receiver  # noqa: F401

TEMPLATE = {"name": "seguimiento_lead_v1", "language": {"code": "es"}}


def send(client: GraphClient, to: str = "5491155550001", phone: str = "1300001", **extra):
    body = {"messaging_product": "whatsapp", "to": to, "type": "template", "template": TEMPLATE, **extra}
    return client.post(f"{phone}/messages", body)


def send_error(client: GraphClient, to: str, phone: str = "1300001") -> int | None:
    with pytest.raises(GraphError) as caught:
        send(client, to, phone)
    return caught.value.code


def statuses_of(payloads: list[dict]) -> list[tuple[str, str]]:
    out = []
    for payload in payloads:
        value = payload["entry"][0]["changes"][0]["value"]
        out += [(s["id"], s["status"]) for s in value["statuses"]]
    return out


@pytest.fixture
def graph(meta_sandbox) -> GraphClient:
    return GraphClient(meta_sandbox.issue_token())


def test_the_token_sees_each_businesss_wabas_and_their_phone_numbers(graph):
    wabas = {b["id"]: graph.get_all(f"{b['id']}/owned_whatsapp_business_accounts") for b in graph.get_all("me/businesses")}
    numbers = graph.get_all("1200001/phone_numbers", {"limit": 1, "fields": "id,display_phone_number,verified_name,quality_rating,"
                                                                           "messaging_limit_tier,throughput"})

    assert wabas == {"200001": [{"id": "1200001", "name": "Acme WhatsApp"}], "200002": [{"id": "1200002", "name": "Acme Agency WhatsApp"}]}
    assert numbers == [
        {"id": "1300001", "display_phone_number": "+54 9 11 4000-0000", "verified_name": "Acme Ventas", "quality_rating": "GREEN",
         "messaging_limit_tier": "TIER_1K", "throughput": {"level": "STANDARD"}},
        {"id": "1300002", "display_phone_number": "+54 9 11 4000-0002", "verified_name": "Acme Soporte", "quality_rating": "YELLOW",
         "messaging_limit_tier": "TIER_250", "throughput": {"level": "STANDARD"}}]


def test_pages_come_with_a_page_token_that_alone_can_subscribe_leadgen(meta_sandbox, graph):
    pages = graph.get_all("me/accounts", {"fields": "id,name,access_token"})
    with pytest.raises(GraphError) as with_user_token:
        graph.post("1500001/subscribed_apps", {"subscribed_fields": "leadgen"})

    answer = GraphClient(pages[0]["access_token"]).post("1500001/subscribed_apps", {"subscribed_fields": "leadgen"})
    graph.post("1200001/subscribed_apps")

    assert [(p["id"], p["name"]) for p in pages] == [("1500001", "Acme Ventas"), ("1500002", "Acme Promos")]
    assert with_user_token.value.code == 210
    assert answer == {"success": True}
    assert [(s["object"], s["id"], s["subscribed_fields"]) for s in meta_sandbox.subscriptions] == [
        ("page", "1500001", ["leadgen"]), ("waba", "1200001", ["messages", "message_template_status_update", "user_preferences"])]


def test_sends_over_a_numbers_throughput_get_130429_and_are_not_recorded(meta_sandbox, graph):
    meta_sandbox.add_phone_number("1300009", throughput_mps=3)
    codes = []
    for n in range(12):  # fast enough that at least one second sees more than 3 attempts
        try:
            send(graph, f"54911000000{n:02d}", "1300009")
            codes.append(None)
        except GraphError as error:
            codes.append(error.code)

    assert 130429 in codes and set(codes) <= {None, 130429}
    assert len(meta_sandbox.sent_messages) == codes.count(None)
    assert meta_sandbox.max_sends_per_second("1300009") == 3


def test_a_130429_answer_has_metas_error_body(meta_sandbox, graph):
    meta_sandbox.add_phone_number("1300009", throughput_mps=1)
    body = {"messaging_product": "whatsapp", "to": "5491100000001", "type": "template", "template": TEMPLATE}
    url = f"{meta_sandbox.base_url}/v26.0/1300009/messages"
    headers = {"Authorization": f"Bearer {meta_sandbox.issue_token()}"}

    answers = [requests.post(url, json=dict(body, to=f"54911000000{n}"), headers=headers) for n in range(4)]

    refused = [a for a in answers if a.status_code != 200]
    assert refused and {a.status_code for a in refused} == {400}
    error = refused[0].json()["error"]
    assert (error["code"], error["message"], error["error_data"]) == (
        130429, "(#130429) Rate limit hit",
        {"messaging_product": "whatsapp", "details": "Cloud API message throughput has been reached."})


def test_a_second_message_to_the_same_recipient_within_6_s_gets_131056(meta_sandbox, graph):
    send(graph, "5491155550001")

    assert send_error(graph, "5491155550001") == 131056
    assert send(graph, "5491155550001", "1300002")["messages"]  # another number of ours may write to them
    assert len(meta_sandbox.sent_messages) == 2


def test_an_opted_out_recipient_gets_131050_until_they_resume(meta_sandbox, graph):
    meta_sandbox.opt_out("5491155550001")
    refused = send_error(graph, "5491155550001")
    meta_sandbox.user_preferences("5491155550001", "resume")

    accepted = send(graph, "5491155550001")

    assert refused == 131050 and accepted["messages"][0]["id"]
    assert [m["to"] for m in meta_sandbox.sent_messages] == ["5491155550001"]


def test_an_accepted_send_records_the_callback_data_and_emits_sent_delivered_read(meta_sandbox, graph):
    answer = send(graph, biz_opaque_callback_data="send-42")
    wamid = answer["messages"][0]["id"]

    payloads = meta_sandbox.take_webhooks()

    [recorded] = meta_sandbox.sent_messages
    assert (recorded["wamid"], recorded["biz_opaque_callback_data"], recorded["phone_number_id"]) == (wamid, "send-42", "1300001")
    assert isinstance(recorded["sent_at"], float)
    assert statuses_of(payloads) == [(wamid, "sent"), (wamid, "delivered"), (wamid, "read")]
    first = payloads[0]
    assert first["object"] == "whatsapp_business_account" and first["entry"][0]["id"] == "1200001"
    value = first["entry"][0]["changes"][0]["value"]
    assert value["metadata"] == {"display_phone_number": "5491140000000", "phone_number_id": "1300001"}
    assert {k: v for k, v in value["statuses"][0].items() if k != "timestamp"} == {
        "id": wamid, "status": "sent", "recipient_id": "5491155550001", "biz_opaque_callback_data": "send-42",
        "conversation": {"id": "CONV_SBX5491155550001", "origin": {"type": "marketing"}},
        "pricing": {"billable": True, "pricing_model": "PMP", "category": "marketing", "type": "regular"}}
    assert meta_sandbox.take_webhooks() == []


def test_a_status_plan_can_reorder_duplicate_and_fail(meta_sandbox, graph):
    meta_sandbox.set_status_plan(["sent", "delivered", "read"], reorder=True, duplicate=True)
    wamid = send(graph, "5491155550001")["messages"][0]["id"]
    shuffled = statuses_of(meta_sandbox.take_webhooks())
    meta_sandbox.set_status_plan(fail_code=131026)
    failed_wamid = send(graph, "5491155550002")["messages"][0]["id"]
    failed = meta_sandbox.take_webhooks()

    assert sorted(shuffled) == sorted([(wamid, s) for s in ("sent", "delivered", "read") for _ in range(2)])
    assert [s for _, s in shuffled] != ["sent", "sent", "delivered", "delivered", "read", "read"]
    assert statuses_of(failed) == [(failed_wamid, "sent"), (failed_wamid, "failed")]
    error = failed[1]["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"][0]
    assert (error["code"], error["title"]) == (131026, "Message undeliverable.")


def test_a_scripted_send_failure_is_metas_error_and_a_timed_out_send_still_reached_meta(meta_sandbox):
    meta_sandbox.fail_send_next(1, code=131048)
    slow_client = GraphClient(meta_sandbox.issue_token(), timeout=0.5)
    refused = send_error(slow_client, "5491155550001")
    meta_sandbox.slow_next(1, seconds=1.0, path_contains="/messages")

    with pytest.raises(GraphError) as timed_out:
        send(slow_client, "5491155550002")

    assert refused == 131048 and timed_out.value.network
    assert _eventually(lambda: [m["to"] for m in meta_sandbox.sent_messages]) == ["5491155550002"]


def _eventually(read, attempts: int = 50):
    """What the sandbox does in its own threads lands a little later: poll for it (not a timing assertion)."""
    for _ in range(attempts):
        value = read()
        if value:
            return value
        time.sleep(0.1)
    return read()


def test_user_preferences_and_template_updates_emit_their_webhooks(meta_sandbox, graph):
    meta_sandbox.user_preferences("5491155550001", "stop")
    stopped = send_error(graph, "5491155550001")
    meta_sandbox.template_status_update("1100001", "PAUSED")

    preference, template = meta_sandbox.take_webhooks()

    assert stopped == 131050
    assert preference["entry"][0]["changes"][0]["field"] == "user_preferences"
    value = preference["entry"][0]["changes"][0]["value"]
    assert value["user_preferences"][0] | {"timestamp": 0} == {
        "wa_id": "5491155550001", "detail": "User requested to stop marketing messages", "category": "marketing_messages",
        "value": "stop", "timestamp": 0}
    assert template["entry"][0]["changes"][0] == {"field": "message_template_status_update", "value": {
        "event": "PAUSED", "message_template_id": 1100001, "message_template_name": "seguimiento_lead_v1",
        "message_template_language": "es", "message_template_category": "MARKETING", "reason": None,
        "other_info": {"title": "FIRST_PAUSE", "description": "Your template has been paused for 3 hours due to low quality."}}}
    assert [t["status"] for t in graph.get_all("1200001/message_templates") if t["id"] == "1100001"] == ["PAUSED"]
    assert send_error(graph, "5491155550009") == 132015


def test_with_a_webhook_url_the_sandbox_posts_status_webhooks_signed(meta_sandbox, graph, receiver):
    url, received = receiver
    meta_sandbox.webhook_url = url
    wamid = send(graph)["messages"][0]["id"]

    bodies = _eventually(lambda: received if len(received) == 3 else [])

    assert statuses_of([json.loads(raw) for _, raw in bodies]) == [
        (wamid, "sent"), (wamid, "delivered"), (wamid, "read")]
    assert all(headers["X-Hub-Signature-256"].startswith("sha256=") for headers, _ in bodies)
    assert meta_sandbox.take_webhooks() == []


def test_the_control_endpoint_scripts_whatsapp_actions(meta_sandbox, graph):
    script = requests.post(f"{meta_sandbox.base_url}/_sandbox/script", json={
        "add_phone_number": {"phone_number_id": "1300077", "throughput_mps": 5},
        "set_status_plan": ["sent", "read"], "opt_out": {"wa_id": "5491155550003"}})
    wamid = send(graph, "5491155550001", "1300077")["messages"][0]["id"]

    assert script.json() == {"ok": True, "results": {"add_phone_number": None, "set_status_plan": None, "opt_out": None}}
    assert statuses_of(meta_sandbox.take_webhooks()) == [(wamid, "sent"), (wamid, "read")]
    assert send_error(graph, "5491155550003", "1300077") == 131050


# -- into the app ------------------------------------------------------------------------------------------
def test_queued_sandbox_webhooks_are_delivered_signed_to_the_app_and_stored_once(acme_meta, meta_sandbox, client):
    from crm_marketing.models import WebhookEvent
    from tests.fixtures.webhooks import deliver_sandbox_webhooks

    meta_sandbox.set_status_plan(duplicate=True)
    wamid = send(GraphClient(meta_sandbox.issue_token()), biz_opaque_callback_data="send-7")["messages"][0]["id"]
    meta_sandbox.user_preferences("5491155550009", "stop")

    answers = deliver_sandbox_webhooks(client, meta_sandbox)

    assert [a.status_code for a in answers] == [200] * 7
    assert sorted(WebhookEvent.objects.values_list("field", "entry_id")) == [
        ("messages", "1200001")] * 3 + [("user_preferences", "1200001")]
    assert deliver_sandbox_webhooks(client, meta_sandbox) == []
    assert wamid in str(list(WebhookEvent.objects.values_list("payload", flat=True)))


@pytest.mark.django_db(transaction=True)
def test_with_the_apps_url_the_sandbox_posts_status_webhooks_to_the_live_server(live_server, acme_meta, meta_sandbox):
    from crm_marketing.models import WebhookEvent

    meta_sandbox.webhook_url = f"{live_server.url}/webhooks/meta"
    send(GraphClient(meta_sandbox.issue_token()))

    stored = _eventually(lambda: list(WebhookEvent.objects.values_list("field", flat=True)) if WebhookEvent.objects.count() == 3 else [])

    assert stored == ["messages"] * 3
    deliveries = _eventually(lambda: [d["status"] for d in meta_sandbox.state.outbox.deliveries if d["status"] is not None]
                             if len(meta_sandbox.state.outbox.deliveries) == 3 else [])
    assert deliveries == [200, 200, 200]
