"""`MetaSandbox`: the public face of the sandbox, used in-process by tests and as a process by the demo."""
from __future__ import annotations

import datetime as dt
import threading
from typing import Any, Callable, Sequence

from . import assets, webhooks
from .server import SandboxHTTPServer, serve_in_thread
from .state import FAULT_KINDS, FailScript, JobPlan, LoggedRequest, SandboxState, SlowScript
from .whatsapp import STATUS_ORDER, StatusPlan

# A template status webhook's event -> the status it leaves (None: unchanged, e.g. FLAGGED).
TEMPLATE_EVENT_STATUS: dict[str, str | None] = {"REINSTATED": "APPROVED", "FLAGGED": None}
DEFAULT_PERCENT = {"Job Not Started": 0, "Job Started": 0, "Job Running": 100, "Job Completed": 100,
                   "Job Failed": 0, "Job Skipped": 0}


class MetaSandbox:
    """A fake Graph API on loopback. `reset()` returns to the fixture state and drops everything issued
    or scripted since: tokens and codes from OAuth or `issue_token` stop working (fixture tokens work
    again), scripts, job plans, restatements, added leads, sent messages, report runs and the log are
    cleared, and the dialog decision goes back to None (an HTML page). WhatsApp state (added numbers and
    templates, subscriptions, opt-outs, rate counters, the status plan, queued webhooks) is reset too, and
    `webhook_url` goes back to the constructor's."""

    def __init__(self, fixture: dict[str, Any] | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 app_id: str = "sandbox-app", app_secret: str = "sandbox-secret", ads: int | None = None,
                 days: int | None = None, seed: int | None = None, today: dt.date | None = None,
                 webhook_url: str | None = None) -> None:
        self.host, self.port = host, port
        self.app_id, self.app_secret = app_id, app_secret
        self.state = SandboxState(fixture, app_id=app_id, app_secret=app_secret, ads=ads, days=days,
                                  seed=seed, today=today, webhook_url=webhook_url)
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _bind(self) -> SandboxHTTPServer:
        self._server = SandboxHTTPServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        return self._server

    def start(self) -> MetaSandbox:
        """Serve from a daemon thread; returns self so `MetaSandbox().start()` reads well."""
        self._thread = serve_in_thread(self._bind())
        return self

    def serve_forever(self, ready: Callable[[MetaSandbox], None] | None = None) -> None:
        """Serve in the calling thread until KeyboardInterrupt; `ready` is called once bound."""
        server = self._bind()
        if ready is not None:
            ready(self)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

    def stop(self) -> None:
        self.state.outbox.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> MetaSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        self.state.reset()

    # -- what happened -------------------------------------------------------------------------------
    @property
    def requests(self) -> list[LoggedRequest]:
        return self.state.requests

    @property
    def sent_messages(self) -> list[dict[str, Any]]:
        """Accepted sends: the request body plus wamid, phone_number_id and sent_at (epoch seconds)."""
        return self.state.sent_messages

    @property
    def subscriptions(self) -> list[dict[str, Any]]:
        """`subscribed_apps` calls: {object: "waba"|"page", id, subscribed_fields, at}."""
        return self.state.subscriptions

    def max_sends_per_second(self, phone_number_id: str) -> int:
        """The most sends this number had accepted in any one wall-clock second."""
        with self.state.lock:
            return self.state.traffic.max_per_second(phone_number_id)

    def refused_sends(self) -> dict[int, int]:
        """Sends refused for a limit so far: {130429: over a number's rate, 131056: same recipient within 6 s}."""
        with self.state.lock:
            return dict(self.state.traffic.refused)

    # -- webhooks the sandbox emits ----------------------------------------------------------------------
    @property
    def webhook_url(self) -> str | None:
        """Where status / preference / template webhooks go; None queues them for `take_webhooks()`."""
        return self.state.outbox.url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self.state.outbox.url = url

    def take_webhooks(self) -> list[dict[str, Any]]:
        """The queued webhook payloads (oldest first, delays ignored), removed from the queue."""
        return self.state.outbox.take()

    def set_status_plan(self, statuses: Sequence[str] = STATUS_ORDER, *, delay_seconds: float = 0.0,
                        reorder: bool = False, duplicate: bool = False, fail_code: int | None = None) -> None:
        """What follows each accepted send: one statuses webhook per status (`fail_code`: sent, then
        failed with that error), `delay_seconds` apart, shuffled (`reorder`) or each twice (`duplicate`)."""
        unknown = [s for s in statuses if s not in (*STATUS_ORDER, "failed")]
        if unknown:
            raise ValueError(f"unknown statuses {unknown}")
        with self.state.lock:
            self.state.traffic.plan = StatusPlan(list(statuses), float(delay_seconds), bool(reorder), bool(duplicate),
                                                 int(fail_code) if fail_code is not None else None)

    def user_preferences(self, wa_id: str, value: str, *, phone_number_id: str = webhooks.PHONE_NUMBER_ID) -> None:
        """The user stops or resumes marketing messages: the sandbox honours it (131050) and emits the webhook."""
        if value not in ("stop", "resume"):
            raise ValueError("value must be 'stop' or 'resume'")
        with self.state.lock:
            (self.state.traffic.opted_out.add if value == "stop" else self.state.traffic.opted_out.discard)(wa_id)
            phone = self.state.phone_numbers[phone_number_id]
        self.state.outbox.emit(webhooks.user_preferences_payload(
            wa_id, value, waba_id=phone["_waba_id"], phone_number_id=phone_number_id,
            display_phone_number=phone["_display_digits"]))

    def opt_out(self, wa_id: str) -> None:
        """The recipient has stopped marketing messages: sends to them fail with 131050 (no webhook)."""
        with self.state.lock:
            self.state.traffic.opted_out.add(wa_id)

    def template_status_update(self, template_id: str | int, event: str, reason: str | None = None) -> None:
        """Meta reviews a template: its status changes and message_template_status_update is emitted."""
        with self.state.lock:
            found = [(w["id"], t) for w in self.state.wabas.values()
                     for t in w.get("message_templates", []) if t["id"] == str(template_id)]
            if not found:
                raise KeyError(f"no template {template_id}")
            [(waba_id, template)] = found
            new_status = TEMPLATE_EVENT_STATUS.get(event, event)
            if new_status is not None:
                template["status"] = new_status
            if reason and event == "REJECTED":
                template["rejected_reason"] = reason
        other_info = {"title": "FIRST_PAUSE", "description": "Your template has been paused for 3 hours due to low quality."} \
            if event == "PAUSED" else None
        self.state.outbox.emit(webhooks.template_status_payload(
            template["id"], template["name"], event, language=template["language"], category=template["category"],
            reason=reason, other_info=other_info, waba_id=waba_id))

    # -- scripting -------------------------------------------------------------------------------------
    def fail_next(self, n: int = 1, *, status: int = 500, code: int | None = None, subcode: int | None = None,
                  message: str | None = None, retry_after: float | None = None, regain_minutes: int | None = None,
                  path_contains: str | None = None, is_transient: bool | None = None, kind: str = "error",
                  processed: bool = True, hold_seconds: float = 30.0) -> None:
        """The next `n` calls whose path contains `path_contains` (a batch: any of its calls) fail as `kind` says:

        - "error" (or an HTTP status such as "500"): a Meta error answer; the call does nothing;
        - "timeout": no answer for `hold_seconds` (longer than the client waits), then the socket closes;
        - "malformed": the answer's JSON is cut off halfway (same status and headers);
        - "drop": the status line, the headers and half the body, then the socket closes mid-response.

        With the transport kinds the call takes effect first, as when Meta did its part and the answer
        was lost on the way (`processed=False`: Meta never acted on it, e.g. a send that did not go out).
        """
        if kind.isdigit():
            kind, status = "error", int(kind)
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS} or an HTTP status")
        with self.state.lock:
            self.state.fail_scripts.append(FailScript(n, status, code, subcode, message, retry_after, regain_minutes,
                                                      path_contains, is_transient, kind, bool(processed),
                                                      float(hold_seconds)))

    def slow_next(self, n: int = 1, *, seconds: float = 2.0, path_contains: str | None = None) -> None:
        with self.state.lock:
            self.state.slow_scripts.append(SlowScript(n, seconds, path_contains))

    def pending_faults(self) -> int:
        """How many scripted failures have not happened yet."""
        with self.state.lock:
            return sum(script.remaining for script in self.state.fail_scripts)

    def clear_scripts(self) -> None:
        """Meta recovers: scripted failures and slow answers not used yet are dropped, held answers let go."""
        with self.state.lock:
            self.state.fail_scripts.clear()
            self.state.slow_scripts.clear()
            self.state.held_answers.set()
            self.state.held_answers = threading.Event()

    def require_appsecret_proof(self, required: bool = True) -> None:
        """Refuse user-token calls without ``appsecret_proof`` (a wrong one is always refused)."""
        with self.state.lock:
            self.state.require_appsecret_proof = bool(required)

    def expire_token(self, token: str | None = None) -> None:
        """Expire `token`, or every token issued so far; they then get 190 / subcode 463."""
        self.state.expire_token(token)

    def set_dialog_decision(self, decision: str | None, *, user_id: str | None = None) -> None:
        if decision not in ("approve", "deny", None):
            raise ValueError("decision must be 'approve', 'deny' or None")
        with self.state.lock:
            self.state.dialog_decision = decision
            if user_id is not None:
                self.state.dialog_user_id = user_id

    def issue_token(self, user_id: str = "10001", scopes: Sequence[str] | None = None, *,
                    long_lived: bool = True) -> str:
        """A valid user token without going through the dialog."""
        default = next(iter(self.state.fixture.get("tokens", [])), {}).get("scopes", ["ads_read"])
        return self.state.issue_token(user_id, list(scopes or default), long_lived=long_lived).access_token

    def restate(self, factor: float = 1.1, *, last_days: int | None = None) -> None:
        """Multiply the figures of existing days (all generated days, or the last `last_days`)."""
        today = self.state.today()
        since = today - dt.timedelta(days=(last_days or self.state.days) - 1)
        with self.state.lock:
            self.state.restatements.append((since, today, factor))

    def insights_job_plan(self, polls: str | Sequence[str | tuple[str, int]] | None = None, *,
                          too_much_data: bool = False, runs: int = 1) -> None:
        """Script the next `runs` report runs. Each poll of GET /{run} returns the next status
        (the last one repeats); default ("Job Running" at 100%, then "Job Completed").
        `too_much_data` makes POST act_X/insights fail with code 1 instead."""
        items = [polls] if isinstance(polls, str) else list(polls or ("Job Running", "Job Completed"))
        plan = [(p, DEFAULT_PERCENT.get(p, 0)) if isinstance(p, str) else (p[0], int(p[1])) for p in items]
        with self.state.lock:
            self.state.job_plans.extend(JobPlan(plan, too_much_data) for _ in range(runs))

    def set_template_status(self, name: str, status: str) -> None:
        """Change a template's status quietly (no webhook; see `template_status_update`)."""
        with self.state.lock:
            for template in self.state.all_templates():
                if template["name"] == name:
                    template["status"] = status

    def fail_send_next(self, n: int = 1, *, code: int = 131026, status: int = 400, message: str | None = None,
                       retry_after: float | None = None) -> None:
        """The next `n` sends answer Meta's error `code` and are not recorded as sent."""
        self.fail_next(n, status=status, code=code, message=message, retry_after=retry_after, path_contains="/messages")

    # -- WhatsApp assets -------------------------------------------------------------------------------------
    def add_phone_number(self, phone_number_id: str, *, waba_id: str = webhooks.WABA_ID,
                         display_phone_number: str | None = None, throughput_mps: int = 80,
                         verified_name: str | None = None) -> None:
        """A phone number of `waba_id` (a new WABA is owned by the first business) that accepts
        `throughput_mps` sends per second."""
        display = display_phone_number or f"+1 555-{phone_number_id[-7:-4] or '000'}-{phone_number_id[-4:]}"
        phone = assets.phone_number(phone_number_id, display, verified_name=verified_name, throughput_mps=throughput_mps)
        with self.state.lock:
            waba = self._waba(waba_id)
            waba["phone_numbers"] = [p for p in waba["phone_numbers"] if p["id"] != phone_number_id] + [phone]
            phone["_waba_id"] = waba_id
            self.state.phone_numbers[phone_number_id] = phone

    def add_template(self, name: str, *, waba_id: str = webhooks.WABA_ID, status: str = "APPROVED",
                     language: str = "es", category: str = "MARKETING", body: str = "Hola {{1}}",
                     parameter_format: str = "POSITIONAL", components: list[dict[str, Any]] | None = None,
                     template_id: str | None = None, rejected_reason: str | None = None,
                     quality_score: str | None = "GREEN") -> str:
        """A message template of `waba_id` (components default to one BODY with `body`); returns its id."""
        with self.state.lock:
            waba = self._waba(waba_id)
            template_id = template_id or str(1190000 + int(self.state.next_id()))
            template: dict[str, Any] = {"id": template_id, "name": name, "language": language, "status": status,
                                        "category": category, "parameter_format": parameter_format,
                                        "components": components or [{"type": "BODY", "text": body}]}
            if quality_score:
                template["quality_score"] = {"score": quality_score, "date": int(dt.datetime.now().timestamp())}
            if rejected_reason:
                template["rejected_reason"] = rejected_reason
            waba["message_templates"].append(template)
            return template_id

    def _waba(self, waba_id: str) -> dict[str, Any]:
        waba = self.state.wabas.get(waba_id)
        if waba is None:
            business = next(iter(self.state.businesses.values()))
            business.setdefault("owned_whatsapp_business_accounts", []).append(waba_id)
            waba = self.state.wabas[waba_id] = {"id": waba_id, "name": f"WABA {waba_id}", "business_id": business["id"],
                                                "phone_numbers": [], "message_templates": []}
        waba.setdefault("phone_numbers", [])
        waba.setdefault("message_templates", [])
        return waba

    # -- leads ---------------------------------------------------------------------------------------------
    def add_lead(self, form_id: str = "900001", ad_id: str | None = "700001", *, lead_id: str | None = None,
                 full_name: str | None = None, email: str | None = None, phone: str | None = None,
                 field_data: list[dict[str, Any]] | None = None, created_time: dt.datetime | None = None,
                 platform: str = "fb") -> str:
        """Create a lead (lead.json shape) for the form; ad, ad set and campaign names come from the ad."""
        state = self.state
        with state.lock:
            lead_id = lead_id or str(810000 + int(state.next_id()))
            n = len(state.leads) + 1
            when = created_time or dt.datetime.now(dt.timezone.utc)
            created = when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+0000")
            lead: dict[str, Any] = {"id": lead_id, "created_time": created}
            ad = state.ads.get(ad_id or "")
            if ad is not None:
                adset = state.adsets[ad["adset_id"]]
                campaign = state.campaigns[adset["campaign_id"]]
                lead.update(ad_id=ad["id"], ad_name=ad["name"], adset_id=adset["id"], adset_name=adset["name"],
                            campaign_id=campaign["id"], campaign_name=campaign["name"])
            lead.update(form_id=form_id, is_organic=ad is None, platform=platform)
            lead["field_data"] = field_data or [
                {"name": "full_name", "values": [full_name or f"Lead Sandbox {n}"]},
                {"name": "email", "values": [email or f"lead{n}@example.com"]},
                {"name": "phone_number", "values": [phone or f"+54911555{n:05d}"]}]
            state.leads[lead_id] = lead
            if form_id not in state.forms:
                state.forms[form_id] = {"id": form_id, "name": f"Form {form_id}", "status": "ACTIVE"}
            return lead_id

    def leads_for_form(self, form_id: str) -> list[dict[str, Any]]:
        with self.state.lock:
            leads = [dict(lead) for lead in self.state.leads.values() if lead["form_id"] == form_id]
        return sorted(leads, key=lambda lead: lead["created_time"], reverse=True)

    # -- webhooks ------------------------------------------------------------------------------------------
    def fire_webhook(self, url: str, payload: dict[str, Any], *, app_secret: str | None = None,
                     signature: str | None = None) -> webhooks.WebhookResponse:
        """POST `payload` signed with X-Hub-Signature-256 (or the given `signature`, to test rejection)."""
        return webhooks.post_signed(url, payload, app_secret or self.app_secret, signature=signature)

    # -- control endpoint --------------------------------------------------------------------------------
    def script(self, action: str, args: Any) -> Any:
        """One action of POST /_sandbox/script, e.g. ("fail_next", {"n": 2, "status": 429})."""
        kwargs = args if isinstance(args, dict) else {}
        if action == "expire_token":
            return self.expire_token(args)
        if action == "dialog_decision":
            return self.set_dialog_decision(args)
        if action == "insights_job_plan" and not isinstance(args, dict):
            return self.insights_job_plan(args)
        if action == "restate" and not isinstance(args, dict):
            return self.restate(float(args))
        if action == "fire_webhook":
            response = self.fire_webhook(**kwargs)
            return {"status": response.status_code, "body": response.text}
        if action == "webhook_url":
            self.webhook_url = args or None
            return None
        if action == "take_webhooks":
            return self.take_webhooks()
        if action == "set_status_plan" and isinstance(args, list):
            return self.set_status_plan(args)
        allowed = {"fail_next", "slow_next", "clear_scripts", "insights_job_plan", "restate", "add_lead", "issue_token",
                   "set_template_status", "add_phone_number", "add_template", "fail_send_next", "opt_out",
                   "set_status_plan", "user_preferences", "template_status_update", "require_appsecret_proof"}
        if action not in allowed:
            raise ValueError(f"unknown action {action!r}")
        return getattr(self, action)(**kwargs)
