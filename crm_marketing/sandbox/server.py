"""The HTTP side of the sandbox: request parsing, scripted faults, usage headers, control endpoints."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from . import batch
from .request import GraphFault, GraphRequest
from .routes import Response, dispatch
from .state import FailScript, LoggedRequest

if TYPE_CHECKING:
    from .sandbox import MetaSandbox

MAX_LOG = 20_000
RATE_LIMIT_CODES = {4, 17, 32, 613, 130429, *range(80000, 80015)}
DEFAULT_FAULTS: dict[int, tuple[int, int | None, str]] = {  # HTTP status -> (code, subcode, message)
    429: (17, 2446079, "(#17) User request limit reached"),
    500: (2, None, "An unexpected error has occurred. Please retry your request later."),
    503: (2, None, "(#2) Service temporarily unavailable"),
}
MESSAGES = {
    1: "Please reduce the amount of data you're asking for, then retry your request",
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    190: "Error validating access token: Session has expired.",
    130429: "(#130429) Rate limit hit",
    131026: "(#131026) Message undeliverable.",
    131047: "(#131047) Re-engagement message.",
    131048: "(#131048) Spam rate limit hit.",
    131049: "(#131049) This message was not delivered to maintain healthy ecosystem engagement.",
    131050: "(#131050) Unable to deliver message. User has stopped marketing messages.",
    131056: "(#131056) (Business Account, Consumer Account) pair rate limit hit",
    132000: "(#132000) Number of parameters does not match the expected number of params",
    132001: "(#132001) Template name does not exist in the translation",
}


def scripted_fault(script: FailScript) -> GraphFault:
    code, subcode, message = DEFAULT_FAULTS.get(script.status, (100, None, "(#100) Scripted sandbox error"))
    if script.code is not None:
        code, subcode = script.code, script.subcode
        message = MESSAGES.get(code) or (
            f"(#{code}) There have been too many calls from this ad-account. Wait a bit and try again."
            if 80000 <= code <= 80014 else f"(#{code}) Scripted sandbox error")
    transient = script.is_transient
    if transient is None:
        transient = script.status >= 500 or script.status == 429 or code in RATE_LIMIT_CODES
    headers = {"Retry-After": str(int(script.retry_after))} if script.retry_after is not None else {}
    return GraphFault(script.message or message, code=code, status=script.status,
                      subcode=script.subcode if script.subcode is not None else subcode,
                      is_transient=transient, headers=headers)


def usage_headers(sandbox: MetaSandbox, path: str, *, throttled: bool, regain_minutes: int) -> dict[str, str]:
    state = sandbox.state
    load = 100 if throttled else min(40, len(state.requests) // 10)
    headers = {"X-App-Usage": json.dumps({"call_count": load, "total_time": load // 2, "total_cputime": load // 2})}
    first = path.strip("/").split("/", 1)[0]
    account = state.ad_accounts.get(first)
    if first.startswith("act_"):
        headers["X-Ad-Account-Usage"] = json.dumps({
            "acc_id_util_pct": float(load), "reset_time_duration": regain_minutes * 60,
            "ads_api_access_tier": "standard_access"})
    business = (account or {}).get("business_id") or next(iter(state.businesses), "0")
    headers["X-Business-Use-Case-Usage"] = json.dumps({business: [{
        "type": "ads_insights" if "insights" in path else "ads_management", "call_count": load,
        "total_cputime": load // 2, "total_time": load // 2, "estimated_time_to_regain_access": regain_minutes,
        "ads_api_access_tier": "standard_access"}]})
    return headers


def _bearer(headers: dict[str, str]) -> str | None:
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() in ("bearer", "oauth") and token.strip() else None


def _parse_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", "replace")
    if "json" in content_type:
        try:
            return json.loads(text)
        except ValueError:
            return text
    if "x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(text, keep_blank_values=True))
    return text


class Handler(BaseHTTPRequestHandler):
    server: SandboxHTTPServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave in two writes: without this each answer waits ~40 ms

    def do_GET(self) -> None:  # noqa: N802
        self.handle_any("GET")

    def do_POST(self) -> None:  # noqa: N802
        self.handle_any("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self.handle_any("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # the request log is the record
        pass

    def handle_any(self, method: str) -> None:
        sandbox = self.server.sandbox
        split = urlsplit(self.path)
        version, path = GraphRequest.parse_path(split.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = _parse_body(self.rfile.read(length) if length else b"", self.headers.get("Content-Type", ""))
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        headers = dict(self.headers.items())
        if path.startswith("/_sandbox/"):
            self.send(control(sandbox, method, path, body))
            return
        form = body if isinstance(body, dict) else {}
        token = _bearer(headers) or query.get("access_token") or form.get("access_token")
        entry = LoggedRequest(method, path, query, headers, body, version=version)
        with sandbox.state.lock:
            log = sandbox.state.requests
            log.append(entry)
            if len(log) > MAX_LOG:  # a long-running demo process must not grow without bound
                del log[: len(log) - MAX_LOG // 2]
        req = GraphRequest(method, path, version, query, body, headers, sandbox.base_url, token)
        response = respond(sandbox, req)
        entry.status = response.status
        entry.fault = response.fault.kind if response.fault is not None else None
        self.send(response)

    def send(self, response: Response) -> None:
        if isinstance(response.body, str):
            payload, ctype = response.body.encode(), "text/html; charset=utf-8"
        else:
            payload, ctype = json.dumps(response.body).encode(), "application/json; charset=UTF-8"
        fault = response.fault.kind if response.fault is not None else None
        if fault == "timeout":  # hold the answer back (a reset lets it go), then close without one
            self.server.sandbox.state.held_answers.wait(response.fault.hold_seconds)
            self.close_connection = True
            return
        length = len(payload)
        if fault == "malformed":
            payload = payload[: length // 2]
            length = len(payload)
        elif fault == "drop":
            payload = payload[: length // 2]
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(length))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts in tests)
            self.close_connection = True
        if fault == "drop":  # fewer bytes than Content-Length promised, then the socket closes
            self.wfile.flush()
            self.close_connection = True


def respond(sandbox: MetaSandbox, req: GraphRequest) -> Response:
    script = sandbox.state.take_fail(req.path)
    transport = script if script is not None and script.in_transport else None
    if transport is not None:
        script = None if transport.processed else FailScript(1, status=500)  # not processed: Meta failed it
    delay = sandbox.state.take_slow(req.path)
    if delay:
        time.sleep(delay)
    regain = 0
    try:
        if script is not None:
            regain = script.regain_minutes or 0
            raise scripted_fault(script)
        batch.check_appsecret_proof(sandbox, req)
        proof = req.query.get("appsecret_proof")
        # Checked: not a parameter of the call itself (a copy: the request log keeps what was sent).
        req.query = {k: v for k, v in req.query.items() if k != "appsecret_proof"}
        if batch.is_batch(req):
            return batch.run_batch(sandbox, req, respond, proof=proof)
        response = dispatch(sandbox.state, req)
    except GraphFault as fault:
        response = Response(fault.status, fault.body(), dict(fault.headers))
    throttled = script is not None and (script.status == 429 or script.code in RATE_LIMIT_CODES)
    response.headers.update(usage_headers(sandbox, req.path, throttled=throttled, regain_minutes=regain))
    response.fault = transport or response.fault
    return response


def control(sandbox: MetaSandbox, method: str, path: str, body: Any) -> Response:
    """POST /_sandbox/reset, POST /_sandbox/script {action: args}, GET /_sandbox/log."""
    if path == "/_sandbox/reset" and method == "POST":
        sandbox.reset()
        return Response(200, {"ok": True})
    if path == "/_sandbox/log" and method == "GET":
        with sandbox.state.lock:
            return Response(200, {"requests": [r.as_dict() for r in sandbox.requests],
                                  "sent_messages": list(sandbox.sent_messages)})
    if path == "/_sandbox/script" and method == "POST" and isinstance(body, dict):
        results: dict[str, Any] = {}
        try:
            for action, args in body.items():
                results[action] = sandbox.script(action, args)
        except (TypeError, ValueError, KeyError) as exc:
            return Response(400, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return Response(200, {"ok": True, "results": results})
    return Response(404, {"ok": False, "error": "unknown control endpoint"})


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a burst of new keep-alive connections (a send pass opens one
    # per thread) overflowed it, and a connection reset after the request was written looks, to the
    # sender, like a request Meta may have taken (an ``unknown`` send).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: MetaSandbox) -> None:
        self.sandbox = sandbox
        super().__init__(address, Handler)


def serve_in_thread(server: SandboxHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="meta-sandbox", daemon=True)
    thread.start()
    return thread
