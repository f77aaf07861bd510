"""Graph API endpoints of the sandbox: each returns a `Response` or raises `GraphFault`."""
from __future__ import annotations

import datetime as dt
import html
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from . import assets, insights, whatsapp
from .request import GraphFault, GraphRequest, not_found, select
from .state import JobPlan, ReportRun, SandboxState

FAILED_RUN = {"async_status": "Job Failed", "async_percent_completion": 0, "error_code": 2601,
              "error_subcode": 1815107, "error_message": "Loading Async Ads Report Failed"}


@dataclass
class Response:
    status: int
    body: Any  # dict -> JSON, str -> HTML
    headers: dict[str, str] = field(default_factory=dict)
    fault: Any = None  # a FailScript of a transport kind: how the server garbles or loses this answer


def ok(body: Any) -> Response:
    return Response(200, body)


def dispatch(state: SandboxState, req: GraphRequest) -> Response:
    segs = [s for s in req.path.split("/") if s]
    if segs == ["dialog", "oauth"]:
        return oauth_dialog(state, req)
    if segs == ["oauth", "access_token"]:
        return ok(access_token(state, req))
    if segs == ["debug_token"]:
        return ok(debug_token(state, req))
    page_id = state.page_tokens.get(req.token or "")
    if page_id is not None:
        with state.lock:
            return ok(assets.page_token_call(state, req, page_id))
    user_id = state.user_token(req.token).user_id
    if not segs or len(segs) > 2:
        raise GraphFault("Unknown path components: " + req.path, code=2500)
    node, edge = segs[0], (segs[1] if len(segs) > 1 else None)
    writable = (("insights", True), ("messages", False), ("subscribed_apps", False))
    if req.method != "GET" and (edge, node.startswith("act_")) not in writable:
        raise GraphFault(f"Unsupported {req.method.lower()} request.", code=100, subcode=33)
    with state.lock:
        handler = _find_handler(state, node, edge)
        return ok(handler(state, req, user_id, node))


def _find_handler(state: SandboxState, node: str, edge: str | None) -> Callable[..., Any]:
    table: dict[tuple[str, str | None], Callable[..., Any]] = {}
    if node == "me" or node in state.users:
        table = {(node, None): get_user, (node, "businesses"): list_businesses, (node, "adaccounts"): list_my_accounts,
                 (node, "accounts"): assets.list_my_pages}
    elif node.startswith("act_"):
        table = {(node, None): get_account, (node, "campaigns"): list_objects, (node, "adsets"): list_objects,
                 (node, "ads"): list_objects, (node, "insights"): account_insights}
    elif node in state.businesses:
        table = {(node, None): get_business, (node, "owned_ad_accounts"): list_owned_accounts,
                 (node, "owned_whatsapp_business_accounts"): assets.list_owned_wabas}
    elif node in state.report_runs:
        table = {(node, None): poll_report_run, (node, "insights"): report_run_insights}
    elif node in state.campaigns or node in state.adsets or node in state.ads:
        table = {(node, None): get_ad_object}
    elif node in state.leads:
        table = {(node, None): get_lead}
    elif node in state.forms:
        table = {(node, None): lambda s, r, u, n: select(s.forms[n], r.fields()), (node, "leads"): list_form_leads}
    elif node in state.wabas:
        table = {(node, None): assets.get_waba, (node, "message_templates"): list_templates,
                 (node, "phone_numbers"): assets.list_phone_numbers, (node, "subscribed_apps"): assets.waba_subscribed_apps}
    elif node in state.phone_numbers:
        table = {(node, None): assets.get_phone_number, (node, "messages"): whatsapp.send_message}
    elif node in state.pages:
        table = {(node, None): assets.page_with_user_token,
                 (node, "subscribed_apps"): assets.page_subscribed_apps_needs_page_token}
    handler = table.get((node, edge))
    if handler is None:
        raise not_found(node) if edge is None or not table else GraphFault(
            f"(#100) Tried accessing nonexisting field ({edge})", code=100)
    return handler


# -- OAuth ----------------------------------------------------------------------------------------
def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(p for p in (parts.query, urlencode(params)) if p)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def oauth_dialog(state: SandboxState, req: GraphRequest) -> Response:
    params = dict(req.query)
    redirect_uri = params.get("redirect_uri")
    if params.get("client_id") != state.app_id or not redirect_uri:
        return Response(400, "<h1>Invalid App ID or redirect_uri</h1>")
    decision = params.pop("sandbox_decision", None) or state.dialog_decision
    if decision == "approve":
        scopes = [s for s in params.get("scope", "").split(",") if s]
        code = state.issue_code(state.dialog_user_id, scopes, redirect_uri)
        location = _with_query(redirect_uri, {"code": code, "state": params.get("state", "")})
        return Response(302, "", {"Location": location})
    if decision == "deny":
        return Response(302, "", {"Location": _with_query(redirect_uri, {
            "error": "access_denied", "error_code": "200", "error_description": "Permissions error",
            "error_reason": "user_denied", "state": params.get("state", "")})})
    base = f"/{req.version}{req.path}" if req.version else req.path
    link = {d: html.escape(f"{base}?{urlencode({**params, 'sandbox_decision': d})}") for d in ("approve", "deny")}
    page = (f"<!doctype html><title>Meta sandbox: connect</title><h1>{html.escape(state.application)} wants "
            f"access</h1><p>Scopes: {html.escape(params.get('scope', ''))}</p>"
            f"<a id='approve' href='{link['approve']}'>Approve</a> <a id='deny' href='{link['deny']}'>Deny</a>")
    return Response(200, page)


def access_token(state: SandboxState, req: GraphRequest) -> dict[str, Any]:
    if req.param("client_id") != state.app_id or req.param("client_secret") != state.app_secret:
        raise GraphFault("Error validating client secret.", code=100)
    if req.param("grant_type") == "fb_exchange_token":
        short = state.user_token(req.param("fb_exchange_token"))
        token = state.issue_token(short.user_id, short.scopes, long_lived=True)
    else:
        token = state.redeem_code(req.param("code"), req.param("redirect_uri"))
    return {"access_token": token.access_token, "token_type": "bearer",
            "expires_in": token.expires_at - int(time.time())}


def debug_token(state: SandboxState, req: GraphRequest) -> dict[str, Any]:
    if req.token != f"{state.app_id}|{state.app_secret}":
        state.user_token(req.token)  # a valid user token may debug too; anything else is a 190
    token = state.tokens.get(req.param("input_token") or "")
    if token is None:
        error = {"code": 190, "message": "Invalid OAuth access token."}
        return {"data": {"error": error, "is_valid": False, "scopes": []}}
    data: dict[str, Any] = {
        "app_id": state.app_id, "type": "USER", "application": state.application,
        "data_access_expires_at": token.issued_at + 90 * 86400, "expires_at": token.expires_at,
        "is_valid": token.valid(), "issued_at": token.issued_at, "scopes": token.scopes, "user_id": token.user_id}
    if not token.valid():
        data["error"] = {"code": 190, "subcode": 463, "message": "Session has expired."}
    return {"data": data}


# -- users, businesses, ad accounts --------------------------------------------------------------------
def get_user(state: SandboxState, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    target = user_id if node == "me" else node
    if target != user_id:
        raise not_found(node)
    user = state.users[target]
    return select({"id": user["id"], "name": user["name"]}, req.fields() or {"id": None, "name": None})


def list_businesses(state: SandboxState, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    items = [{"id": b, "name": state.businesses[b]["name"]} for b in state.users[user_id].get("businesses", [])]
    return req.page([select(i, req.fields()) for i in items])


def account_view(account: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in account.items() if k != "business_id"}


def list_my_accounts(state: SandboxState, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    items = [account_view(state.ad_accounts[a]) for a in state.visible_account_ids(user_id)]
    return req.page([select(i, req.fields()) for i in items])


def get_business(state: SandboxState, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    if node not in state.users[user_id].get("businesses", []):
        raise not_found(node)
    return select({"id": node, "name": state.businesses[node]["name"]}, req.fields())


def list_owned_accounts(state: SandboxState, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    get_business(state, req, user_id, node)
    items = [account_view(state.ad_accounts[a]) for a in state.businesses[node].get("owned_ad_accounts", [])]
    return req.page([select(i, req.fields()) for i in items])


def get_account(state: SandboxState, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    return select(account_view(state.account(user_id, node)), req.fields())


# -- campaigns, ad sets, ads ----------------------------------------------------------------------------
def _meta_time(day: dt.date, tz_name: str, end: bool = False) -> str:
    try:
        tz = ZoneInfo(tz_name)
    except (KeyError, ValueError):
        tz = dt.timezone.utc
    moment = dt.datetime.combine(day, dt.time(23, 59) if end else dt.time(0, 0), tz)
    return moment.strftime("%Y-%m-%dT%H:%M:%S%z")


def object_view(state: SandboxState, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    campaign = state.campaigns[obj["campaign_id"] if kind == "adset" else
                               state.adsets[obj["adset_id"]]["campaign_id"] if kind == "ad" else obj["id"]]
    account = state.ad_accounts[campaign["account_id"]]
    start, stop = insights.campaign_days(state, campaign)
    tz = account["timezone_name"]
    view = {"id": obj["id"], "account_id": account["account_id"], "name": obj["name"], "status": obj["status"],
            "effective_status": obj["effective_status"]}
    if kind == "campaign":
        view["objective"] = obj["objective"]
    if kind != "ad":
        view.update({k: obj[k] for k in ("daily_budget", "lifetime_budget") if k in obj})
        view["start_time"] = _meta_time(start, tz)
        if campaign.get("stop_days_ago") is not None:
            view["stop_time" if kind == "campaign" else "end_time"] = _meta_time(stop, tz, end=True)
    if kind in ("adset", "ad"):
        view["campaign_id"] = campaign["id"]
        view["campaign"] = {"id": campaign["id"], "name": campaign["name"]}
    if kind == "ad":
        adset = state.adsets[obj["adset_id"]]
        view["adset_id"] = adset["id"]
        view["adset"] = {"id": adset["id"], "name": adset["name"]}
    view["created_time"] = _meta_time(start - dt.timedelta(days=3), tz)
    view["updated_time"] = _meta_time(min(stop, state.today() - dt.timedelta(days=1)), tz)
    return view


def list_objects(state: SandboxState, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    account = state.account(user_id, node)
    kind = req.path.rstrip("/").rsplit("/", 1)[-1][:-1]  # campaigns -> campaign
    source = {"campaign": state.campaigns, "adset": state.adsets, "ad": state.ads}[kind]
    wanted = req.json_param("effective_status")
    items = []
    for obj in sorted(source.values(), key=lambda o: int(o["id"])):
        if state.account_of(kind, obj) == account["id"] and (not wanted or obj["effective_status"] in wanted):
            items.append(select(object_view(state, kind, obj), req.fields()))
    return req.page(items)


def get_ad_object(state: SandboxState, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    kind = "campaign" if node in state.campaigns else "adset" if node in state.adsets else "ad"
    obj = {"campaign": state.campaigns, "adset": state.adsets, "ad": state.ads}[kind][node]
    if state.account_of(kind, obj) not in state.visible_account_ids(user_id):
        raise not_found(node)
    return select(object_view(state, kind, obj), req.fields())


# -- insights ----------------------------------------------------------------------------------------------
def account_insights(state: SandboxState, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    account = state.account(user_id, node)
    params = {k: v for k, v in req.params.items() if k not in ("access_token", "limit", "after")}
    params["time_range"] = req.json_param("time_range")
    if req.method == "GET":
        return req.page(insights.report(state, account, params))
    plan: JobPlan = state.take_job_plan()
    if plan.too_much_data:
        raise GraphFault("Please reduce the amount of data you're asking for, then retry your request",
                         code=1, subcode=99, status=500)
    insights.parse_time_range(state, params["time_range"])  # validate before accepting the job
    run = ReportRun(str(6000000 + len(state.report_runs) + 1), account, params, plan.polls)
    state.report_runs[run.id] = run
    return {"report_run_id": run.id}


def poll_report_run(state: SandboxState, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    run = state.report_runs[node]
    state.account(user_id, run.account["id"])
    run.poll_index += 1
    status, percent = run.status
    body: dict[str, Any] = {"id": run.id, "account_id": run.account["account_id"]}
    if status == "Job Failed":
        return body | FAILED_RUN
    body.update(async_status=status, async_percent_completion=percent, time_ref=run.created_at)
    if status == "Job Completed":
        since, until = insights.parse_time_range(state, run.params.get("time_range"))
        body.update(date_start=since.isoformat(), date_stop=until.isoformat(), time_completed=int(time.time()))
    return body


def report_run_insights(state: SandboxState, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    run = state.report_runs[node]
    state.account(user_id, run.account["id"])
    status = run.status[0]
    if status != "Job Completed":
        raise GraphFault(f"(#100) Report run {run.id} is not completed ({status})", code=100)
    if run.rows is None:
        run.rows = insights.report(state, run.account, run.params)
    return req.page(run.rows)


# -- leads --------------------------------------------------------------------------------------------------
def get_lead(state: SandboxState, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    return select(state.leads[node], req.fields())


def _created_ts(lead: dict[str, Any]) -> int:
    return int(dt.datetime.strptime(lead["created_time"], "%Y-%m-%dT%H:%M:%S%z").timestamp())


def list_form_leads(state: SandboxState, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    leads = [lead for lead in state.leads.values() if lead["form_id"] == node]
    for rule in req.json_param("filtering", []) or []:
        if rule.get("field") == "time_created" and rule.get("operator") == "GREATER_THAN":
            leads = [lead for lead in leads if _created_ts(lead) > int(rule["value"])]
    leads.sort(key=_created_ts, reverse=True)
    return req.page([select(lead, req.fields()) for lead in leads])


# -- WhatsApp --------------------------------------------------------------------------------------------
def list_templates(state: SandboxState, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    items = [t for t in state.wabas[node].get("message_templates", [])
             if not req.param("status") or t["status"] == req.param("status")]
    return req.page([select(t, req.fields()) for t in items])

