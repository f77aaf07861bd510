"""Graph batch requests (``POST /`` with ``batch=[{method, relative_url}, ...]``) and the app secret proof.

A batch answers one list item per call, in order: ``{"code", "headers", "body"}`` with the body as a JSON
string, as Graph does; each call goes through the same routes, scripted faults and usage headers as a
call of its own, with the batch's token. Only GETs may be batched here (all our batches are listings).
"""
from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qsl, urlsplit

from .request import GraphFault, GraphRequest
from .routes import Response

if TYPE_CHECKING:
    from .sandbox import MetaSandbox

MAX_BATCH = 50  # Graph's limit


def is_batch(req: GraphRequest) -> bool:
    return req.method == "POST" and req.path.strip("/") == "" and req.param("batch") is not None


def run_batch(sandbox: MetaSandbox, req: GraphRequest, respond: Callable[[MetaSandbox, GraphRequest], Response], *,
              proof: str | None = None) -> Response:
    """Each call with the batch's token and its (already checked) appsecret_proof."""
    calls = req.json_param("batch")
    if not isinstance(calls, list) or not calls:
        raise GraphFault("(#100) The parameter batch must be a non-empty JSON array", code=100)
    if len(calls) > MAX_BATCH:
        raise GraphFault(f"(#100) Too many requests in batch message. Maximum batch size is {MAX_BATCH}", code=100)
    answers: list[dict[str, Any]] = []
    fault = None
    for call in calls:
        if not isinstance(call, dict) or str(call.get("method", "GET")).upper() != "GET" or not call.get("relative_url"):
            raise GraphFault("(#100) Each batch call needs method GET and a relative_url", code=100)
        url = urlsplit("/" + str(call["relative_url"]).lstrip("/"))
        version, path = GraphRequest.parse_path(url.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        if proof is not None:
            query["appsecret_proof"] = proof
        inner = GraphRequest("GET", path, version or req.version, query, None, req.headers, req.base_url, req.token)
        answer = respond(sandbox, inner)
        fault = fault or answer.fault  # a call's transport fault garbles or loses the whole batch answer
        headers = [{"name": name, "value": value} for name, value in answer.headers.items()]
        answers.append({"code": answer.status, "headers": headers, "body": json.dumps(answer.body)})
    return Response(200, answers, fault=fault)


def check_appsecret_proof(sandbox: MetaSandbox, req: GraphRequest) -> None:
    """Meta's check: a wrong ``appsecret_proof`` is refused; a missing one only when the app requires it
    (``require_appsecret_proof``). App tokens (``app_id|secret``) and token-less calls are exempt."""
    if not req.token or "|" in req.token:
        return
    proof = req.query.get("appsecret_proof") or (req.body.get("appsecret_proof") if isinstance(req.body, dict) else None)
    if proof is None:
        if sandbox.state.require_appsecret_proof:
            raise GraphFault("API calls from the server require an appsecret_proof argument", code=100,
                             extra={"type": "GraphMethodException"})
        return
    expected = hmac.new(sandbox.state.app_secret.encode(), req.token.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(str(proof), expected):
        raise GraphFault("Invalid appsecret_proof provided in the API argument", code=100,
                         extra={"type": "GraphMethodException"})
