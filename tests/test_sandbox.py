"""The Meta sandbox speaks the Graph subset we use, over real loopback HTTP."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from crm_marketing.graph import GraphClient, GraphError
from crm_marketing.sandbox import (
    MetaSandbox,
    ctwa_message_payload,
    leadgen_payload,
    plain_message_payload,
    status_event,
    statuses_payload,
    template_status_payload,
    user_preferences_payload,
)

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "meta"
SCOPES = "ads_read,business_management,leads_retrieval"


def dialog(sandbox: MetaSandbox, **extra: str) -> requests.Response:
    params = {"client_id": sandbox.app_id, "redirect_uri": "http://127.0.0.1/crm/auth/meta/callback",
              "state": "st4te", "scope": SCOPES, "response_type": "code", **extra}
    return requests.get(f"{sandbox.base_url}/v26.0/dialog/oauth?{urlencode(params)}", allow_redirects=False)


def redirect_params(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def exchange_code(sandbox: MetaSandbox, code: str, secret: str | None = None) -> dict:
    return GraphClient().get("oauth/access_token", {
        "client_id": sandbox.app_id, "client_secret": secret or sandbox.app_secret,
        "redirect_uri": "http://127.0.0.1/crm/auth/meta/callback", "code": code})


def run_report(client: GraphClient, since: dt.date, until: dt.date, *, limit: int = 500) -> list[dict]:
    run_id = client.post("act_300001/insights", {
        "level": "ad", "time_increment": 1, "time_range": {"since": since.isoformat(), "until": until.isoformat()},
        "fields": "ad_id,campaign_id,spend,impressions,clicks,actions,account_currency"})["report_run_id"]
    while client.get(run_id)["async_status"] != "Job Completed":
        pass
    return client.get_all(f"{run_id}/insights", {"limit": limit})


# -- OAuth ---------------------------------------------------------------------------------------------
def test_an_approved_dialog_code_becomes_a_short_then_a_long_token_whose_scopes_debug_token_reports(meta_sandbox):
    meta_sandbox.set_dialog_decision("approve")

    params = redirect_params(dialog(meta_sandbox))
    short = exchange_code(meta_sandbox, params["code"])
    long = GraphClient().get("oauth/access_token", {
        "grant_type": "fb_exchange_token", "client_id": meta_sandbox.app_id,
        "client_secret": meta_sandbox.app_secret, "fb_exchange_token": short["access_token"]})
    debug = GraphClient.app().get("debug_token", {"input_token": long["access_token"]})["data"]

    assert params["state"] == "st4te"
    assert short["token_type"] == "bearer" and short["expires_in"] <= 2 * 3600
    assert 59 * 86400 < long["expires_in"] <= 60 * 86400 and long["access_token"] != short["access_token"]
    assert debug["scopes"] == SCOPES.split(",")
    assert (debug["is_valid"], debug["user_id"], debug["app_id"], debug["type"]) == (True, "10001", meta_sandbox.app_id, "USER")
    assert debug["expires_at"] > debug["issued_at"]
    assert GraphClient(long["access_token"]).get("me")["id"] == "10001"


def test_an_authorization_code_works_only_once(meta_sandbox):
    meta_sandbox.set_dialog_decision("approve")
    code = redirect_params(dialog(meta_sandbox))["code"]
    exchange_code(meta_sandbox, code)

    with pytest.raises(GraphError) as caught:
        exchange_code(meta_sandbox, code)

    assert (caught.value.http_status, caught.value.code, caught.value.subcode) == (400, 100, 36009)


def test_a_wrong_client_secret_is_rejected(meta_sandbox):
    meta_sandbox.set_dialog_decision("approve")
    code = redirect_params(dialog(meta_sandbox))["code"]

    with pytest.raises(GraphError) as caught:
        exchange_code(meta_sandbox, code, secret="not-the-secret")

    assert caught.value.code == 100 and not caught.value.is_transient


def test_a_denied_dialog_redirects_with_access_denied_and_the_state(meta_sandbox):
    meta_sandbox.set_dialog_decision("deny")

    assert redirect_params(dialog(meta_sandbox)) == {
        "error": "access_denied", "error_code": "200", "error_description": "Permissions error",
        "error_reason": "user_denied", "state": "st4te"}


def test_an_undecided_dialog_shows_approve_and_deny_links_a_person_can_follow(meta_sandbox):
    page = dialog(meta_sandbox)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    approve_href = page.text.split("id='approve' href='")[1].split("'")[0].replace("&amp;", "&")

    followed = requests.get(meta_sandbox.base_url + approve_href, allow_redirects=False)

    assert set(redirect_params(followed)) == {"code", "state"}


def test_unknown_missing_and_expired_tokens_get_code_190(meta_sandbox):
    token = meta_sandbox.issue_token()
    meta_sandbox.expire_token(token)
    fresh = meta_sandbox.issue_token()

    answers = [requests.get(f"{meta_sandbox.base_url}/v26.0/me", headers=h) for h in (
        {"Authorization": "Bearer EAAnot-a-token"}, {}, {"Authorization": f"Bearer {token}"})]

    assert [r.status_code for r in answers] == [400, 400, 400]
    assert [r.json()["error"]["code"] for r in answers] == [190, 190, 190]
    assert answers[2].json()["error"]["error_subcode"] == 463
    assert GraphClient(fresh).get("me")["id"] == "10001"  # issued after the expiry: still valid


def test_the_access_token_query_parameter_is_accepted_like_real_meta(meta_sandbox):
    token = meta_sandbox.issue_token()

    answer = requests.get(f"{meta_sandbox.base_url}/me", params={"access_token": token})

    assert answer.json() == {"id": "10001", "name": "Ana Gerente"}
    assert meta_sandbox.requests[-1].version is None  # the version prefix is optional


# -- accounts and objects -------------------------------------------------------------------------------
def test_owned_ad_accounts_paginate_with_absolute_next_links_on_the_sandbox(meta_sandbox):
    client = GraphClient(meta_sandbox.issue_token())

    first = client.get("200001/owned_ad_accounts", {"fields": "id,currency,account_status", "limit": 1})

    assert first["data"] == [{"id": "act_300001", "currency": "ARS", "account_status": 1}]
    assert first["paging"]["next"].startswith(f"{meta_sandbox.base_url}/v26.0/200001/owned_ad_accounts?")
    assert client.get_all("200001/owned_ad_accounts", {"limit": 1}) == [
        {"id": "act_300001", "account_id": "300001", "name": "Acme - Leads AR", "currency": "ARS",
         "timezone_name": "America/Argentina/Buenos_Aires", "account_status": 1},
        {"id": "act_300002", "account_id": "300002", "name": "Acme - Legacy", "currency": "USD",
         "timezone_name": "America/New_York", "account_status": 2}]
    assert [b["id"] for b in client.get_all("me/businesses")] == ["200001", "200002"]


def test_an_ad_account_the_user_cannot_see_is_an_error(meta_sandbox):
    other_user = GraphClient(meta_sandbox.issue_token(user_id="10002"), max_retries=0)

    with pytest.raises(GraphError) as caught:
        other_user.get("act_300001")

    assert (caught.value.code, caught.value.subcode) == (100, 33)
    assert other_user.get("act_300003")["currency"] == "EUR"


def test_campaigns_adsets_and_ads_include_every_status_with_string_budgets(meta_sandbox):
    client = GraphClient(meta_sandbox.issue_token())

    campaigns = client.get_all("act_300001/campaigns", {"fields": "id,status,objective,daily_budget,lifetime_budget"})
    ads = client.get_all("act_300001/ads", {"fields": "id,status,adset_id,campaign_id"})
    adsets = client.get_all("act_300001/adsets", {"fields": "id,campaign_id"})
    lookup = client.get("700001", {"fields": "id,name,effective_status,adset{id,name},campaign{id,name}"})

    assert campaigns == [
        {"id": "400001", "status": "ACTIVE", "objective": "OUTCOME_LEADS", "daily_budget": "150000"},
        {"id": "400002", "status": "PAUSED", "objective": "OUTCOME_ENGAGEMENT", "lifetime_budget": "3000000"},
        {"id": "400003", "status": "ARCHIVED", "objective": "OUTCOME_LEADS", "daily_budget": "80000"}]
    assert {a["status"] for a in ads} == {"ACTIVE", "PAUSED", "DELETED", "ARCHIVED"} and len(ads) == 5
    assert ads[0] == {"id": "700001", "status": "ACTIVE", "adset_id": "500001", "campaign_id": "400001"}
    assert all(s["campaign_id"] for s in adsets)
    assert lookup == {"id": "700001", "name": "Video testimonio", "effective_status": "ACTIVE",
                      "adset": {"id": "500001", "name": "AR 25-45"}, "campaign": {"id": "400001", "name": "Leads Q4 - Formulario"}}


def test_every_answer_carries_usage_headers_errors_included(meta_sandbox):
    token = meta_sandbox.issue_token()
    ok = requests.get(f"{meta_sandbox.base_url}/v26.0/act_300001", headers={"Authorization": f"Bearer {token}"})
    error = requests.get(f"{meta_sandbox.base_url}/v26.0/me")

    assert {"X-App-Usage", "X-Ad-Account-Usage", "X-Business-Use-Case-Usage"} <= set(ok.headers)
    assert {"X-App-Usage", "X-Business-Use-Case-Usage"} <= set(error.headers) and error.status_code == 400
    buc = json.loads(ok.headers["X-Business-Use-Case-Usage"])
    assert buc["200001"][0]["estimated_time_to_regain_access"] == 0


# -- insights --------------------------------------------------------------------------------------------
def test_generated_insights_are_the_same_for_the_same_seed_and_differ_after_restatement(meta_sandbox):
    today = dt.datetime.now(dt.timezone.utc).date()
    params = {"level": "ad", "time_increment": 1, "time_range": {"since": str(today - dt.timedelta(days=6)), "until": str(today)}}
    with MetaSandbox() as twin:
        twin_rows = GraphClient(twin.issue_token(), base_url=twin.base_url).get_all("act_300001/insights", params)
    client = GraphClient(meta_sandbox.issue_token())

    rows = client.get_all("act_300001/insights", params)
    meta_sandbox.restate(1.5, last_days=3)
    restated = client.get_all("act_300001/insights", params)

    assert rows == twin_rows and len(rows) == 7 * 3  # ads 700001, 700003, 700004 of the running campaign
    assert all(isinstance(r["spend"], str) and isinstance(r["impressions"], str) for r in rows)
    changed = {r["date_start"] for r, s in zip(rows, restated) if r["spend"] != s["spend"]}
    assert changed == {str(today - dt.timedelta(days=d)) for d in range(3)}


def test_a_sandbox_with_200_generated_ads_over_28_days_reports_5600_rows():
    with MetaSandbox(ads=200, days=28) as sandbox:
        client = GraphClient(sandbox.issue_token(), base_url=sandbox.base_url)
        today = dt.datetime.now(dt.timezone.utc).date()

        rows = run_report(client, today - dt.timedelta(days=28), today)

        result_pages = [r for r in sandbox.requests if r.path.endswith("/insights") and r.method == "GET"]
    assert len(rows) == 5600 == len({(r["ad_id"], r["date_start"]) for r in rows})
    assert len(result_pages) == 12  # 500 rows a page
    assert {r["account_currency"] for r in rows} == {"ARS"}


def test_an_async_report_is_running_at_100_percent_before_it_completes(meta_sandbox):
    client = GraphClient(meta_sandbox.issue_token(), max_retries=0)
    today = dt.datetime.now(dt.timezone.utc).date()
    run_id = client.post("act_300001/insights", {
        "level": "ad", "time_increment": "1", "time_range": json.dumps({"since": str(today - dt.timedelta(days=28)), "until": str(today)})})["report_run_id"]

    first, second = client.get(run_id), client.get(run_id)
    rows = client.get_all(f"{run_id}/insights", {"limit": 100})

    assert (first["async_status"], first["async_percent_completion"]) == ("Job Running", 100)
    assert (second["async_status"], second["date_stop"]) == ("Job Completed", str(today))
    assert rows and all(r["date_start"] == r["date_stop"] for r in rows)
    assert {"spend", "impressions", "clicks", "inline_link_clicks", "reach", "campaign_name", "adset_name", "ad_name"} <= set(rows[0])


def test_a_report_scripted_to_fail_reports_job_failed_and_its_rows_are_not_served(meta_sandbox):
    meta_sandbox.insights_job_plan("Job Failed")
    client = GraphClient(meta_sandbox.issue_token(), max_retries=0)
    run_id = client.post("act_300001/insights", {"level": "ad", "time_increment": 1})["report_run_id"]

    status = client.get(run_id)

    assert (status["async_status"], status["error_code"]) == ("Job Failed", 2601)
    with pytest.raises(GraphError):
        client.get(f"{run_id}/insights")


def test_a_report_asking_too_much_data_fails_with_code_1_on_start(meta_sandbox):
    meta_sandbox.insights_job_plan(too_much_data=True)
    client = GraphClient(meta_sandbox.issue_token())

    with pytest.raises(GraphError) as caught:
        client.post("act_300001/insights", {"level": "ad"})

    assert (caught.value.code, caught.value.http_status) == (1, 500)
    assert len([r for r in meta_sandbox.requests if r.path == "/act_300001/insights"]) == 1


# -- leads, WhatsApp -----------------------------------------------------------------------------------------
def test_form_leads_can_be_added_and_filtered_by_time_created(meta_sandbox):
    old = meta_sandbox.add_lead(created_time=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    new = meta_sandbox.add_lead(full_name="Nuevo Lead", ad_id="700002")
    client = GraphClient(meta_sandbox.issue_token())
    cutoff = int(dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc).timestamp())

    recent = client.get_all("900001/leads", {"filtering": [{"field": "time_created", "operator": "GREATER_THAN", "value": cutoff}]})
    lead = client.get(new)

    assert old not in {r["id"] for r in recent} and new in {r["id"] for r in recent}
    assert (lead["campaign_id"], lead["adset_id"], lead["field_data"][0]["values"]) == ("400002", "500003", ["Nuevo Lead"])
    assert [r["id"] for r in meta_sandbox.leads_for_form("900001")][-1] == old


def test_whatsapp_sends_are_recorded_and_only_approved_templates_go_out(meta_sandbox):
    client = GraphClient(meta_sandbox.issue_token())
    templates = client.get_all("1200001/message_templates", {"limit": 2})
    body = {"messaging_product": "whatsapp", "to": "5491155550001", "type": "template", "biz_opaque_callback_data": "send-42",
            "template": {"name": "seguimiento_lead_v1", "language": {"code": "es"}}}

    sent = client.post("1300001/messages", body)
    with pytest.raises(GraphError) as caught:
        client.post("1300001/messages", dict(body, template={"name": "recordatorio_reunion", "language": {"code": "es"}}))

    assert [t["status"] for t in templates] == ["APPROVED", "PENDING", "REJECTED", "APPROVED", "APPROVED", "PAUSED", "DISABLED",
                                                "IN_APPEAL", "PENDING_DELETION", "LIMIT_EXCEEDED"]
    assert {t.get("parameter_format") for t in templates} >= {"POSITIONAL", "NAMED"}
    assert sent["contacts"] == [{"input": "5491155550001", "wa_id": "5491155550001"}]
    assert sent["messages"][0]["id"].startswith("wamid.")
    assert caught.value.code == 132001
    [recorded] = meta_sandbox.sent_messages
    assert recorded["wamid"] == sent["messages"][0]["id"] and recorded["biz_opaque_callback_data"] == "send-42"


# -- webhooks and control ----------------------------------------------------------------------------------
@pytest.fixture
def receiver():
    """A throwaway HTTP endpoint that records what the sandbox POSTs."""
    received: list[tuple[dict, bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append((dict(self.headers.items()), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/webhooks/meta", received
    server.shutdown()
    server.server_close()


def test_a_fired_webhook_is_signed_with_hmac_sha256_of_the_raw_body(meta_sandbox, receiver):
    url, received = receiver
    payload = leadgen_payload("800001", "900001", "700001")

    response = meta_sandbox.fire_webhook(url, payload)
    meta_sandbox.fire_webhook(url, payload, signature="sha256=forged")

    (headers, raw), (forged_headers, _) = received
    expected = "sha256=" + hmac.new(meta_sandbox.app_secret.encode(), raw, hashlib.sha256).hexdigest()
    assert response.status_code == 200 and response.text == "ok"
    assert hmac.compare_digest(headers["X-Hub-Signature-256"], expected)
    assert forged_headers["X-Hub-Signature-256"] == "sha256=forged"
    assert json.loads(raw) == payload


def shape(value):
    """The key structure of a JSON value (lists reduced to their first item)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__ if value is not None else None


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared/meta samples are not next to the project")
@pytest.mark.parametrize("sample, payload", [
    ("webhook_leadgen.json", leadgen_payload("800001", "900001", "700001", created_time=1795000990)),
    ("webhook_ctwa_message.json", ctwa_message_payload("5491155550002", "Lucas Gómez", "700002", "Plan Pro",
                                                       "Escribinos", "ARAk", text="Hola")),
    ("webhook_statuses.json", statuses_payload([status_event("wamid.X", "delivered", "5491155550001", "send-42")])),
    ("webhook_template_status.json", template_status_payload(1100001, "seguimiento_lead_v1", "PAUSED",
                                                             other_info={"title": "FIRST_PAUSE", "description": "x"})),
    ("webhook_user_preferences.json", user_preferences_payload("5491155550001", "stop", name="María Pérez")),
])
def test_webhook_payloads_have_the_shape_of_metas_samples(sample, payload):
    assert shape(payload) == shape(json.loads((SAMPLES / sample).read_text()))


def test_plain_and_failed_status_payloads_carry_what_handlers_read():
    plain = plain_message_payload("5491155550001", "María", "STOP")
    failed = statuses_payload(status_event("wamid.Y", "failed", "5491155550003", "send-43", error_code=131050))

    message = plain["entry"][0]["changes"][0]["value"]["messages"][0]
    assert message["text"] == {"body": "STOP"} and "referral" not in message
    assert failed["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"][0]["code"] == 131050


def test_control_endpoints_script_a_failure_and_reset_over_http(meta_sandbox):
    token = meta_sandbox.issue_token()
    base = meta_sandbox.base_url

    scripted = requests.post(f"{base}/_sandbox/script", json={"fail_next": {"n": 1, "status": 503, "retry_after": 2}})
    failed = requests.get(f"{base}/v26.0/me", headers={"Authorization": f"Bearer {token}"})
    log = requests.get(f"{base}/_sandbox/log").json()
    issued = requests.post(f"{base}/_sandbox/script", json={"issue_token": {"user_id": "10001"}}).json()
    requests.post(f"{base}/_sandbox/reset")

    assert scripted.json() == {"ok": True, "results": {"fail_next": None}}
    assert (failed.status_code, failed.headers["Retry-After"], failed.json()["error"]["is_transient"]) == (503, "2", True)
    assert [(r["path"], r["status"]) for r in log["requests"]] == [("/me", 503)]
    assert issued["results"]["issue_token"].startswith("EAA")
    assert meta_sandbox.requests == []
    unknown = requests.get(f"{base}/v26.0/me", headers={"Authorization": f"Bearer {token}"})
    assert unknown.json()["error"]["code"] == 190  # reset drops tokens issued since the fixture


@pytest.mark.parametrize("processed", [True, False], ids=["meta did it", "meta never did it"])
def test_scripted_transport_faults_lose_the_answer_the_way_each_kind_says(meta_sandbox, processed):
    token, url = meta_sandbox.issue_token(), f"{meta_sandbox.base_url}/v26.0/act_300001/insights"
    report = {"level": "ad", "time_range": {"since": "2026-11-01", "until": "2026-11-02"}}
    outcomes = []
    for kind in ("timeout", "malformed", "drop"):
        meta_sandbox.fail_next(1, kind=kind, processed=processed, hold_seconds=5, path_contains="/insights")
        try:
            answer = requests.post(url, json=report, headers={"Authorization": f"Bearer {token}"}, timeout=0.5)
            outcomes.append((kind, answer.status_code, answer.text.endswith("}")))
        except requests.RequestException as exc:
            outcomes.append((kind, type(exc).__name__))

    status = 200 if processed else 500
    assert outcomes == [("timeout", "ReadTimeout"), ("malformed", status, False), ("drop", "ChunkedEncodingError")]
    assert [(r.status, r.fault) for r in meta_sandbox.requests] == [(status, "timeout"), (status, "malformed"), (status, "drop")]
    assert len(meta_sandbox.state.report_runs) == (3 if processed else 0)  # what Meta did although nobody heard


def test_an_http_status_as_the_kind_is_a_meta_error_answer_and_unknown_kinds_are_refused(meta_sandbox):
    meta_sandbox.fail_next(1, kind="503")

    answer = requests.get(f"{meta_sandbox.base_url}/v26.0/me", headers={"Authorization": "Bearer x"}, timeout=5)

    assert (answer.status_code, answer.json()["error"]["code"]) == (503, 2)
    with pytest.raises(ValueError):
        meta_sandbox.fail_next(1, kind="slow")
