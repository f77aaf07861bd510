"""The one Meta Graph API HTTP client (Marketing, Lead and WhatsApp calls).

The token travels only in the Authorization header: never in a URL, a log line or an error message.
Every call made with a user or page token also carries `appsecret_proof` (HMAC-SHA256 of the token
keyed with META_APP_SECRET), which apps that "require app secret" demand and which proves the call
comes from our server.

GETs are retried with backoff on throttling / transient errors; POSTs never are once they may have
reached Meta (the caller decides from its own records), unless the caller opts in with
`post(..., retry_post=True)` for a POST whose repetition is harmless. Today that is only the insights
report run (`POST act_X/insights`): a retried POST that had in fact reached Meta leaves an orphaned
report run, which nobody polls and Meta discards; it writes nothing and sends nothing."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

log = logging.getLogger("crm_marketing.graph")

RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 130429, *range(80000, 80015)})
# Business use case (ad account) throttles: without a regain time from Meta, the client does not retry them
# (a quick retry only hammers a throttled ad account); a sync parks the ad account instead (DESIGN section 6).
PARK_CODES = frozenset(range(80000, 80015))
TOKEN_INVALID_CODES = frozenset({190, 102})
TRANSIENT_CODES = frozenset({1, 2})
USAGE_HEADERS = ("x-app-usage", "x-ad-account-usage", "x-business-use-case-usage", "x-fb-ads-insights-throttle")
BACKOFF_BASE_SECONDS = 0.5
_TOKEN_IN_TEXT = re.compile(r"(access_token=|Bearer\s+)[^&\s\"']+", re.IGNORECASE)
# A Graph object id (lead, ad, page, WABA...): digits only. Ids that arrive from outside (webhooks)
# are checked with is_meta_id before they become a path, so no value chooses another Graph path.
_META_ID = re.compile(r"[0-9]{1,30}")
# A relative Graph path: segments of letters, digits, "_", "." and "-" (never "." or ".." alone).
_GRAPH_PATH = re.compile(r"(?:v\d+\.\d+/)?[A-Za-z0-9_-]+(?:/[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*)*/?")


def is_meta_id(value: Any) -> bool:
    """True for a Graph object id (a string of digits), the only thing an outside value may put in a path."""
    return isinstance(value, str) and _META_ID.fullmatch(value) is not None


def _setting(name: str, default: Any) -> Any:
    from django.conf import settings

    return getattr(settings, name, default) if settings.configured else default


def _loads(raw: str | None) -> Any:
    try:
        return json.loads(raw) if raw else None
    except (TypeError, ValueError):
        return None


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


@dataclass(frozen=True)
class Usage:
    """Meta's rate-usage headers; `regain_seconds` > 0 means Meta asked us to stop for that long."""

    app_pct: float = 0.0
    ad_account_pct: float = 0.0
    regain_seconds: int = 0
    raw: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, headers: Mapping[str, str] | None) -> Usage:
        raw = {k.lower(): str(v) for k, v in (headers or {}).items() if k.lower() in USAGE_HEADERS}
        app = _loads(raw.get("x-app-usage"))
        app_pct = max((_number(app.get(k)) for k in ("call_count", "total_time", "total_cputime")), default=0.0) \
            if isinstance(app, dict) else 0.0
        account = _loads(raw.get("x-ad-account-usage"))
        account_pct = _number(account.get("acc_id_util_pct")) if isinstance(account, dict) else 0.0
        regain = 0.0
        buc = _loads(raw.get("x-business-use-case-usage"))
        for entries in buc.values() if isinstance(buc, dict) else ():
            for entry in entries if isinstance(entries, list) else ():
                if isinstance(entry, dict):
                    regain = max(regain, _number(entry.get("estimated_time_to_regain_access")) * 60)
        return cls(app_pct, account_pct, int(regain), raw)


class GraphError(Exception):
    """Any failure talking to Meta: Meta's error body, a non-JSON answer or a network error (code None)."""

    def __init__(self, message: str, *, http_status: int | None = None, code: int | None = None,
                 subcode: int | None = None, fbtrace_id: str | None = None, transient_flag: bool = False,
                 retry_after: float | None = None, usage: Usage | None = None, method: str = "",
                 path: str = "", network: bool = False, sent: bool = True, garbled: bool = False) -> None:
        super().__init__(message)
        self.message, self.http_status, self.code, self.subcode = message, http_status, code, subcode
        self.fbtrace_id, self.transient_flag, self.retry_after = fbtrace_id, transient_flag, retry_after
        self.usage, self.method, self.path = usage, method, path
        self.network, self.sent = network, sent  # sent=False: the connection never opened
        self.garbled = garbled  # a success or 5xx answer that is not JSON (cut off mid-body): asking again may work

    @property
    def is_rate_limited(self) -> bool:
        return self.code in RATE_LIMIT_CODES or self.http_status == 429

    @property
    def is_token_invalid(self) -> bool:
        return self.code in TOKEN_INVALID_CODES

    @property
    def is_too_much_data(self) -> bool:
        """Code 1 "reduce the amount of data": a definite answer for that request, not worth repeating."""
        return self.code == 1 and "reduce the amount of data" in self.message.lower()

    @property
    def is_transient(self) -> bool:
        return not self.is_too_much_data and (self.transient_flag or self.network or self.garbled
                                              or self.code in TRANSIENT_CODES or (self.http_status or 0) >= 500)

    def __str__(self) -> str:
        code = "no code" if self.code is None else f"code {self.code}" + (f"/{self.subcode}" if self.subcode else "")
        trace = f" fbtrace_id={self.fbtrace_id}" if self.fbtrace_id else ""
        return f"Graph {self.method} {self.path} failed (HTTP {self.http_status}, {code}): {self.message}{trace}"


def _is_absolute(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def _encode(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Graph takes nested values (time_range, filtering, effective_status) as JSON strings."""
    out = {}
    for key, value in (params or {}).items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (dict, list, tuple)):
            value = json.dumps(value, separators=(",", ":"))
        out[key] = str(value)
    return out


def _never_sent(exc: requests.RequestException) -> bool:
    """True only when the connection was never established, so Meta cannot have seen the request."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False
    inner = exc.args[0] if exc.args else None
    return isinstance(getattr(inner, "reason", inner), (NewConnectionError, ConnectTimeoutError))


def _session_for(base_url: str) -> requests.Session:
    """A session that reads the environment's proxy and CA-bundle settings once, for our one host:
    with ``trust_env`` requests scans them (and the OS proxy settings) on every call, a third of the
    CPU of a send's POST."""
    session = requests.Session()
    session.proxies.update(requests.utils.get_environ_proxies(base_url))  # {} when NO_PROXY covers the host
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False
    return session


class GraphClient:
    def __init__(self, access_token: str | None = None, *, base_url: str | None = None, version: str | None = None,
                 timeout: float | None = None, max_retries: int | None = None, max_backoff: float | None = None,
                 sleep: Callable[[float], None] = time.sleep, session: requests.Session | None = None) -> None:
        self._token = access_token
        self.base_url = (base_url or _setting("META_GRAPH_URL", "https://graph.facebook.com")).rstrip("/")
        self.version = version or _setting("META_GRAPH_API_VERSION", "v26.0")
        self.timeout = timeout if timeout is not None else float(_setting("META_HTTP_TIMEOUT", 10))
        self.max_retries = max_retries if max_retries is not None else int(_setting("META_MAX_RETRIES", 3))
        self.max_backoff = max_backoff if max_backoff is not None else float(_setting("META_MAX_BACKOFF_SECONDS", 30))
        self._sleep = sleep
        self.session = session or _session_for(self.base_url)
        self.last_usage: Usage | None = None

    @classmethod
    def app(cls, **kwargs: Any) -> GraphClient:
        """A client holding the app token (APP_ID|APP_SECRET), e.g. for debug_token."""
        app_id, secret = _setting("META_APP_ID", "sandbox-app"), _setting("META_APP_SECRET", "sandbox-secret")
        return cls(f"{app_id}|{secret}", **kwargs)

    def __repr__(self) -> str:
        return f"<GraphClient {self.base_url}/{self.version} token={'set' if self._token else 'none'}>"

    def close(self) -> None:
        self.session.close()

    # -- public calls -------------------------------------------------------------------------------
    def get(self, path: str, params: dict[str, Any] | None = None, *, next_link: bool = False) -> dict[str, Any]:
        """GET a Graph path; with ``next_link``, ``path`` is a ``paging.next`` URL Meta gave (rebased on our host)."""
        return self._call("GET", self._url(path, next_link=next_link), params=_encode(params))

    def post(self, path: str, data: dict[str, Any] | None = None, *, retry_post: bool = False) -> dict[str, Any]:
        """POST; retried like a GET only with ``retry_post=True``, for a call whose repetition is harmless."""
        return self._call("POST", self._url(path), json_body=data or {}, retry_post=retry_post)

    def batch(self, calls: list[tuple[str, dict[str, Any] | None]]) -> list[dict[str, Any] | GraphError]:
        """Several GETs in one HTTP call (Graph batch: ``POST /`` with ``batch=[{method, relative_url}]``).

        Returns, in order, each call's body or its GraphError. The batch itself is retried like a GET
        (its calls are GETs, so repeating it is harmless)."""
        batch = [{"method": "GET", "relative_url": f"{path.lstrip('/')}?{urlencode(_encode(params))}" if params
                  else path.lstrip("/")} for path, params in calls]
        url = f"{self.base_url}/{self.version}/"
        answers = self._call("POST", url, json_body={"batch": batch}, retry_post=True, expect=list)
        results: list[dict[str, Any] | GraphError] = []
        for (path, params), answer in zip(calls, answers):
            answer = answer if isinstance(answer, dict) else {}
            body = _loads(answer.get("body")) if isinstance(answer.get("body"), str) else answer.get("body")
            status = int(answer.get("code") or 0)
            if isinstance(body, dict) and 200 <= status < 300 and "error" not in body:
                results.append(body)
                continue
            headers = {h.get("name", ""): str(h.get("value", "")) for h in answer.get("headers") or []
                       if isinstance(h, dict)}
            usage = Usage.parse(headers)
            error = self._error_from_body("GET", urlsplit(self._url(path)).path, status, body, headers, usage)
            if not error.is_token_invalid and error.is_transient and not error.is_rate_limited:
                try:  # one call of the batch hit a transient error: that call alone, with the GET retries
                    results.append(self.get(path, params))
                    continue
                except GraphError as retried:
                    error = retried
            results.append(error)
        if len(results) < len(calls):
            raise GraphError("batch answered fewer results than calls", method="POST", path="/", http_status=200)
        return results

    def iter_pages(self, path: str, params: dict[str, Any] | None = None, *, max_pages: int = 200,
                   next_link: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Yield each page's `data`, following `paging.next` (rebased on our base URL, token removed);
        with ``next_link`` the first page is itself a next link Meta gave."""
        page = self.get(path, params, next_link=next_link)
        for number in range(1, max_pages + 1):
            rows = page.get("data") or []
            yield rows
            next_url = (page.get("paging") or {}).get("next")
            if not next_url or not rows:
                return
            if number == max_pages:
                log.warning("graph pagination of %s stopped at max_pages=%s", urlsplit(self._url(path, next_link=True)).path, max_pages)
                return
            page = self._call("GET", self._url(next_url, next_link=True), params={})

    def get_all(self, path: str, params: dict[str, Any] | None = None, *, max_pages: int = 200) -> list[dict[str, Any]]:
        return [row for rows in self.iter_pages(path, params, max_pages=max_pages) for row in rows]

    # -- internals -----------------------------------------------------------------------------------
    def _url(self, path: str, *, next_link: bool = False) -> str:
        """The URL of a Graph path. An absolute URL is accepted only as a next link Meta gave (its path and
        query kept, any token dropped, sent to *our* host only); anything else must be a plain Graph path."""
        if next_link and _is_absolute(path):
            parts = urlsplit(path)
            pairs = parse_qsl(parts.query, keep_blank_values=True)
            query = urlencode([(k, v) for k, v in pairs if k not in ("access_token", "appsecret_proof")])
            return f"{self.base_url}{parts.path}" + (f"?{query}" if query else "")
        path = path.lstrip("/")
        if path and not _GRAPH_PATH.fullmatch(path):
            raise ValueError(f"not a Graph path: {path[:80]!r}")
        if re.match(r"v\d+\.\d+/", path):
            return f"{self.base_url}/{path}"
        return f"{self.base_url}/{self.version}/{path}"

    def _call(self, method: str, url: str, *, params: dict[str, str] | None = None,
              json_body: dict[str, Any] | None = None, retry_post: bool = False, expect: type = dict) -> Any:
        attempt = 0
        while True:
            try:
                return self._send(method, url, params, json_body, expect)
            except GraphError as error:
                unhinted_park = error.code in PARK_CODES and not (
                    error.retry_after or (error.usage.regain_seconds if error.usage else 0))
                retryable = not error.is_token_invalid and not unhinted_park and (
                    error.is_rate_limited or error.is_transient)
                if method != "GET" and retry_post:  # harmless to repeat: on 5xx / transient answers, never on a throttle
                    retryable = retryable and error.is_transient and not error.is_rate_limited
                elif method != "GET":  # it may have reached Meta: retry only if it provably did not
                    retryable = error.network and not error.sent
                if not retryable or attempt >= self.max_retries:
                    raise
                wait = self._backoff(attempt, error)
                if wait > self.max_backoff:
                    log.warning("graph %s %s: Meta asks to wait %.0fs (cap %.0fs), giving up",
                                method, error.path, wait, self.max_backoff)
                    raise
                log.info("graph %s %s: retry %d in %.1fs after %s", method, error.path, attempt + 1, wait,
                         error.code if error.code is not None else "network error")
                self._sleep(wait)
                attempt += 1

    def _backoff(self, attempt: int, error: GraphError) -> float:
        delay = BACKOFF_BASE_SECONDS * (2 ** attempt) * (1 + random.random() * 0.25)
        hints = [error.retry_after or 0, error.usage.regain_seconds if error.usage else 0]
        return max(delay, *hints)

    def appsecret_proof(self) -> str | None:
        """HMAC-SHA256 of the token keyed with the app secret (hex), for user and page tokens; None for no
        token or the app token (``APP_ID|APP_SECRET``, which is the secret itself)."""
        if not self._token or "|" in self._token:
            return None
        secret = str(_setting("META_APP_SECRET", "sandbox-secret"))
        return hmac.new(secret.encode(), self._token.encode(), hashlib.sha256).hexdigest()

    def _send(self, method: str, url: str, params: dict[str, str] | None,
              json_body: dict[str, Any] | None, expect: type = dict) -> Any:
        path = urlsplit(url).path
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        proof = self.appsecret_proof()
        if proof:  # in the query string for every method (a next link's query already holds the others)
            params = {**(params or {}), "appsecret_proof": proof}
        started = time.monotonic()
        try:
            response = self.session.request(method, url, params=params or None, json=json_body, headers=headers,
                                            timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            log.warning("graph %s %s -> %s after %.0f ms", method, path, type(exc).__name__,
                        (time.monotonic() - started) * 1000)
            raise GraphError(f"network error: {type(exc).__name__}", method=method, path=path, network=True,
                             sent=not _never_sent(exc)) from None
        elapsed = (time.monotonic() - started) * 1000
        usage = self.last_usage = Usage.parse(response.headers)
        log.debug("graph %s %s -> %s in %.0f ms", method, path, response.status_code, elapsed)
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, expect) and response.status_code < 400 and not (isinstance(body, dict) and "error" in body):
            return body
        raise self._error_from_body(method, path, response.status_code, body, response.headers, usage)

    def _error_from_body(self, method: str, path: str, status: int, body: Any, headers: Mapping[str, str],
                         usage: Usage) -> GraphError:
        info = body.get("error") if isinstance(body, dict) else None
        retry_after = _number(headers.get("Retry-After")) or None
        if not isinstance(info, dict):
            message = "non-JSON response" if body is None else "unexpected response shape"
            error = GraphError(message, http_status=status, method=method, path=path,
                               retry_after=retry_after, usage=usage, garbled=body is None and not 400 <= status < 500)
        else:
            error = GraphError(
                self._redact(str(info.get("message") or "")), http_status=status,
                code=info.get("code") if isinstance(info.get("code"), int) else None,
                subcode=info.get("error_subcode"), fbtrace_id=info.get("fbtrace_id"),
                transient_flag=bool(info.get("is_transient")), retry_after=retry_after, usage=usage,
                method=method, path=path)
        if error.retry_after is None and error.is_rate_limited and usage.regain_seconds:
            error.retry_after = usage.regain_seconds
        log.warning("graph %s %s -> %s code=%s subcode=%s fbtrace_id=%s", method, path, status,
                    error.code, error.subcode, error.fbtrace_id)
        return error

    def _redact(self, text: str) -> str:
        if self._token:
            text = text.replace(self._token, "[token]")
        return _TOKEN_IN_TEXT.sub(r"\1[token]", text)
