"""The sandbox's mutable world: seeded objects, tokens, scripts and the request log.

All mutation happens under `SandboxState.lock` (the server is threaded)."""
from __future__ import annotations

import copy
import datetime as dt
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .assets import load_wabas
from .outbox import WebhookOutbox
from .request import GraphFault, not_found
from .whatsapp import Traffic

FIXTURE_PATH = Path(__file__).with_name("fixture.json")
SHORT_TOKEN_SECONDS = 2 * 3600
LONG_TOKEN_SECONDS = 5183999  # ~60 days, as Meta answers
CODE_SECONDS = 600
DEFAULT_JOB_PLAN: tuple[tuple[str, int], ...] = (("Job Running", 100), ("Job Completed", 100))


def load_default_fixture() -> dict[str, Any]:
    return json.loads(FIXTURE_PATH.read_text(encoding="utf-8"))


@dataclass
class LoggedRequest:
    method: str
    path: str  # without the /vNN.N prefix
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int | None = None
    version: str | None = None
    fault: str | None = None  # "timeout" / "malformed" / "drop": the answer (status above) never arrived whole

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Token:
    access_token: str
    user_id: str
    scopes: list[str]
    issued_at: int
    expires_at: int
    kind: str = "long"  # "short" | "long"
    expired: bool = False

    def valid(self) -> bool:
        return not self.expired and self.expires_at > time.time()


# How a scripted failure shows: a Meta error answer, or the answer lost in transport (see MetaSandbox.fail_next).
FAULT_KINDS = ("error", "timeout", "malformed", "drop")


@dataclass
class FailScript:
    remaining: int
    status: int = 500
    code: int | None = None
    subcode: int | None = None
    message: str | None = None
    retry_after: float | None = None
    regain_minutes: int | None = None
    path_contains: str | None = None
    is_transient: bool | None = None
    kind: str = "error"
    processed: bool = True  # transport kinds: the call takes effect before its answer is lost
    hold_seconds: float = 30.0  # "timeout": how long the answer is held back before the socket closes

    @property
    def in_transport(self) -> bool:
        return self.kind != "error"


@dataclass
class SlowScript:
    remaining: int
    seconds: float = 2.0
    path_contains: str | None = None


@dataclass
class JobPlan:
    polls: list[tuple[str, int]]
    too_much_data: bool = False


@dataclass
class ReportRun:
    id: str
    account: dict[str, Any]
    params: dict[str, Any]
    polls: list[tuple[str, int]]
    poll_index: int = -1  # -1 = never polled
    rows: list[dict[str, Any]] | None = None  # a finished report is a snapshot
    created_at: int = field(default_factory=lambda: int(time.time()))

    @property
    def status(self) -> tuple[str, int]:
        if self.poll_index < 0:
            return ("Job Not Started", 0)
        return self.polls[min(self.poll_index, len(self.polls) - 1)]


class SandboxState:
    def __init__(self, fixture: dict[str, Any] | None, *, app_id: str, app_secret: str,
                 ads: int | None = None, days: int | None = None, seed: int | None = None,
                 today: dt.date | None = None, webhook_url: str | None = None) -> None:
        self.lock = threading.RLock()
        self.outbox = WebhookOutbox(app_secret, webhook_url)
        self.fixture = copy.deepcopy(fixture) if fixture is not None else load_default_fixture()
        self.app_id, self.app_secret = app_id, app_secret
        self.generated_ads = ads
        self.days = days or int(self.fixture.get("days", 90))
        self.seed = seed if seed is not None else int(self.fixture.get("seed", 1))
        self.fixed_today = today
        self.reset()

    # -- lifecycle -----------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the fixture: objects, leads, WABAs, phone numbers, templates; drops issued tokens and
        codes (fixture tokens are valid again), scripts, report runs, restatements, sent messages,
        subscriptions, opt-outs, the status plan, queued webhooks and the log."""
        with self.lock:
            data = copy.deepcopy(self.fixture)
            self.users = {u["id"]: u for u in data["users"]}
            self.businesses = {b["id"]: b for b in data["businesses"]}
            self.ad_accounts = {a["id"]: a for a in data["ad_accounts"]}
            campaigns, adsets, ads = data["campaigns"], data["adsets"], data["ads"]
            if self.generated_ads:
                campaigns, adsets, ads = self._generate_objects(self.generated_ads)
            self.campaigns = {c["id"]: c for c in campaigns}
            self.adsets = {s["id"]: s for s in adsets}
            self.ads = {a["id"]: a for a in ads}
            self.pages = {p["id"]: p for p in data.get("pages", [])}
            self.forms = {f["id"]: f for f in data.get("forms", [])}
            self.leads = {lead["id"]: lead for lead in data.get("leads", [])}
            self.wabas = {w["id"]: w for w in load_wabas(data)}
            self.phone_numbers = {p["id"]: p for w in self.wabas.values() for p in w.get("phone_numbers", [])}
            for waba in self.wabas.values():
                for phone in waba.get("phone_numbers", []):
                    phone["_waba_id"] = waba["id"]
            first_waba = next(iter(self.wabas.values()), {"message_templates": []})
            self.templates: list[dict[str, Any]] = first_waba.setdefault("message_templates", [])
            self.page_tokens = {p["access_token"]: p["id"] for p in self.pages.values() if p.get("access_token")}
            self.subscriptions: list[dict[str, Any]] = []
            self.traffic = Traffic()
            self.outbox.clear()
            self.application = data.get("application", "Sandbox App")
            now = int(time.time())
            self.tokens: dict[str, Token] = {}
            for t in data.get("tokens", []):
                self.tokens[t["access_token"]] = Token(
                    t["access_token"], t["user_id"], list(t.get("scopes", [])), now - 3600,
                    now + int(t.get("expires_in_days", 60)) * 86400)
            self.codes: dict[str, dict[str, Any]] = {}
            self.fail_scripts: list[FailScript] = []
            # Answers held back by a "timeout" fault wait on this event; a reset lets them all go.
            held = getattr(self, "held_answers", None)
            if held is not None:
                held.set()
            self.held_answers = threading.Event()
            self.slow_scripts: list[SlowScript] = []
            self.job_plans: list[JobPlan] = []
            self.report_runs: dict[str, ReportRun] = {}
            self.restatements: list[tuple[dt.date, dt.date, float]] = []
            self.requests: list[LoggedRequest] = []
            self.sent_messages: list[dict[str, Any]] = []
            self.dialog_decision: str | None = None
            self.require_appsecret_proof = False  # like an app with "Require App Secret" switched on
            self.dialog_user_id = next(iter(self.users))
            self.counter = 0

    def _generate_objects(self, count: int) -> tuple[list[dict], list[dict], list[dict]]:
        """N ads in act_300001: 5 ads per ad set, 4 ad sets per campaign, all running over the span."""
        account = next(iter(self.ad_accounts))
        campaigns, adsets, ads = [], [], []
        for i in range(count):
            c_index, s_index = i // 20, i // 5
            cid, sid = str(400001 + c_index), str(500001 + s_index)
            if i % 20 == 0:
                objective = "OUTCOME_LEADS" if c_index % 2 == 0 else "OUTCOME_ENGAGEMENT"
                campaigns.append({"id": cid, "account_id": account, "name": f"Campaña {c_index + 1}",
                                  "status": "ACTIVE", "effective_status": "ACTIVE", "objective": objective,
                                  "daily_budget": "100000", "start_days_ago": self.days + 30, "stop_days_ago": None})
            if i % 5 == 0:
                adsets.append({"id": sid, "campaign_id": cid, "name": f"Conjunto {s_index + 1}",
                               "status": "ACTIVE", "effective_status": "ACTIVE", "daily_budget": "25000"})
            ads.append({"id": str(700001 + i), "adset_id": sid, "name": f"Anuncio {i + 1}",
                        "status": "ACTIVE", "effective_status": "ACTIVE"})
        return campaigns, adsets, ads

    def all_templates(self) -> list[dict[str, Any]]:
        return [t for waba in self.wabas.values() for t in waba.get("message_templates", [])]

    def next_id(self, prefix: str = "") -> str:
        with self.lock:
            self.counter += 1
            return f"{prefix}{self.counter}"

    def today(self) -> dt.date:
        return self.fixed_today or dt.datetime.now(dt.timezone.utc).date()

    # -- tokens and codes ------------------------------------------------------------------
    def issue_token(self, user_id: str, scopes: list[str], *, long_lived: bool = True) -> Token:
        with self.lock:
            now = int(time.time())
            kind = "long" if long_lived else "short"
            raw = f"EAAsbx{kind.capitalize()}{secrets.token_urlsafe(24).replace('-', 'x').replace('_', 'y')}"
            token = Token(raw, user_id, list(scopes), now,
                          now + (LONG_TOKEN_SECONDS if long_lived else SHORT_TOKEN_SECONDS), kind)
            self.tokens[raw] = token
            return token

    def issue_code(self, user_id: str, scopes: list[str], redirect_uri: str) -> str:
        with self.lock:
            code = "AQsbx" + secrets.token_urlsafe(32)
            self.codes[code] = {"user_id": user_id, "scopes": scopes, "redirect_uri": redirect_uri,
                                "created_at": time.time(), "used": False}
            return code

    def redeem_code(self, code: str, redirect_uri: str | None) -> Token:
        with self.lock:
            entry = self.codes.get(code or "")
            if entry is None:
                raise GraphFault("Invalid verification code format.", code=100, subcode=36007)
            if entry["used"]:
                raise GraphFault("This authorization code has been used.", code=100, subcode=36009)
            if time.time() - entry["created_at"] > CODE_SECONDS:
                raise GraphFault("This authorization code has expired.", code=100, subcode=36007)
            if redirect_uri != entry["redirect_uri"]:
                raise GraphFault("Error validating verification code. Please make sure your redirect_uri is "
                                 "identical to the one you used in the OAuth dialog request", code=100, subcode=36008)
            entry["used"] = True
            return self.issue_token(entry["user_id"], entry["scopes"], long_lived=False)

    def user_token(self, raw: str | None) -> Token:
        """The valid user token behind `raw`, or the 190 Meta answers."""
        token = self.tokens.get(raw or "")
        if token is None:
            raise GraphFault("Invalid OAuth access token - Cannot parse access token", code=190)
        if not token.valid():
            raise GraphFault("Error validating access token: Session has expired.", code=190, subcode=463)
        return token

    def expire_token(self, raw: str | None = None) -> None:
        with self.lock:
            for token in self.tokens.values():
                if raw is None or token.access_token == raw:
                    token.expired = True

    # -- scripting ---------------------------------------------------------------------------
    def take_fail(self, path: str) -> FailScript | None:
        with self.lock:
            return self._take(self.fail_scripts, path)

    def take_slow(self, path: str) -> float:
        with self.lock:
            script = self._take(self.slow_scripts, path)
            return script.seconds if script else 0.0

    @staticmethod
    def _take(scripts: list, path: str) -> Any:
        for script in scripts:
            if script.remaining > 0 and (not script.path_contains or script.path_contains in path):
                script.remaining -= 1
                if script.remaining == 0:
                    scripts.remove(script)
                return script
        return None

    def take_job_plan(self) -> JobPlan:
        with self.lock:
            return self.job_plans.pop(0) if self.job_plans else JobPlan(list(DEFAULT_JOB_PLAN))

    def restatement_factor(self, day: dt.date) -> float:
        factor = 1.0
        for since, until, f in self.restatements:
            if since <= day <= until:
                factor *= f
        return factor

    # -- visibility ----------------------------------------------------------------------------
    def visible_account_ids(self, user_id: str) -> list[str]:
        user = self.users.get(user_id, {})
        ids = list(user.get("ad_accounts", []))
        for bm in user.get("businesses", []):
            ids += [a for a in self.businesses.get(bm, {}).get("owned_ad_accounts", []) if a not in ids]
        return ids

    def account(self, user_id: str, account_id: str) -> dict[str, Any]:
        if account_id not in self.ad_accounts or account_id not in self.visible_account_ids(user_id):
            raise not_found(account_id)
        return self.ad_accounts[account_id]

    def account_of(self, obj_kind: str, obj: dict[str, Any]) -> str:
        if obj_kind == "ad":
            obj = self.adsets[obj["adset_id"]]
            obj_kind = "adset"
        if obj_kind == "adset":
            obj = self.campaigns[obj["campaign_id"]]
        return obj["account_id"]
