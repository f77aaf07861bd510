"""Automation rules: validation, writes (one transaction each, audited), deletion and the preview.

The API and Django admin both validate through ``rule_field_errors`` and ``step_errors`` and write
through ``save_rule``, so a rule is held to the same domain rules whichever way it is edited:
- every step's template is of the account, and APPROVED when the step picks it (a step that keeps
  the template it had is not refused because Meta paused it since: that rule is flagged instead);
- the variables map exactly the template's placeholders to whitelisted fields;
- conditions use only the known keys and values; no_reply rules say after how many hours;
  quiet hours have both ends or none;
- one active rule per trigger and identical conditions (409 ``duplicate_rule``, backed by the
  database's partial unique constraint).
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.db import IntegrityError, transaction

from automation.models import AutomationRule, MessageSend, MessageTemplate, RuleStep
from automation.rendering import SendContext, rendered_text, values_for, variable_errors
from automation.services.counters import COUNTER_NAMES, counters_by  # noqa: F401  (COUNTER_NAMES: admin)
from automation.services.templates import refresh_rule_flags
from crm_marketing.audit import record_event
from crm_marketing.errors import Conflict, DomainError
from crm_marketing.models import Lead, Opportunity
from crm_marketing.tenancy import Account

CONDITION_CHOICES: dict[str, list[str] | None] = {
    "lead_sources": list(Lead.Source.values),
    "lead_statuses": list(Lead.Status.values),
    "stages": list(Opportunity.Stage.values),
    "campaign_ids": None,  # Meta campaign ids: digits
}
CAMPAIGN_ID = re.compile(r"^[0-9]{1,30}$")
MAX_STEPS = 20
MAX_DELAY_MINUTES = 60 * 24 * 365
MAX_DAILY_CAP = 100
MAX_NO_REPLY_HOURS = 24 * 90
RULE_FIELDS = ("name", "trigger_type", "conditions", "is_active", "no_reply_hours", "quiet_hours_start", "quiet_hours_end",
               "max_sends_per_lead_per_day", "allow_reentry", "exit_on_reply", "exit_on_won")
DEFAULTS: dict[str, Any] = {"conditions": {}, "is_active": True, "no_reply_hours": None, "quiet_hours_start": None,
                            "quiet_hours_end": None, "max_sends_per_lead_per_day": 3, "allow_reentry": False,
                            "exit_on_reply": True, "exit_on_won": True}


class RuleInvalid(DomainError):
    status_code = 400
    code = "validation_error"

    def __init__(self, fields: dict[str, list[str]], message: str = "The rule has invalid fields."):
        super().__init__(message, fields=fields)


class RuleNotFound(DomainError):
    status_code = 404
    code = "not_found"


def duplicate_rule(trigger_type: str) -> Conflict:
    return Conflict(f"Another active rule already has the {trigger_type} trigger with these conditions; "
                    "deactivate one or change its conditions.", code="duplicate_rule")


# -- validation ---------------------------------------------------------------------------------------------------
def clean_conditions(conditions: Any) -> tuple[dict[str, list[str]], list[str]]:
    """The conditions with known keys only, values deduplicated and sorted; and what is wrong with them."""
    if conditions in (None, ""):
        return {}, []
    if not isinstance(conditions, dict):
        return {}, ["Conditions must be an object: {\"lead_sources\": [...], \"lead_statuses\": [...], "
                    "\"campaign_ids\": [...], \"stages\": [...]}."]
    errors, clean = [], {}
    unknown = sorted(str(key) for key in conditions if key not in CONDITION_CHOICES)
    if unknown:
        errors.append(f"Unknown condition(s) {unknown}; allowed: {sorted(CONDITION_CHOICES)}.")
    for key, allowed in CONDITION_CHOICES.items():
        values = conditions.get(key)
        if values in (None, []):
            continue
        if not isinstance(values, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
            errors.append(f"{key} must be a list of strings.")
            continue
        values = sorted({str(v) for v in values})
        bad = [v for v in values if (v not in allowed if allowed is not None else not CAMPAIGN_ID.match(v))]
        if bad:
            expected = f"allowed: {allowed}" if allowed is not None else "Meta campaign ids are digits"
            errors.append(f"{key}: {[v[:40] for v in bad[:5]]} not valid ({expected}).")
            continue
        clean[key] = values
    return clean, errors


def rule_field_errors(values: dict[str, Any]) -> dict[str, list[str]]:
    """Errors of the rule's own fields (complete values: the rule as it will be saved). Normalises
    ``values["conditions"]`` and drops ``no_reply_hours`` of a trigger that does not use it."""
    errors: dict[str, list[str]] = {}

    def add(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    if not str(values.get("name") or "").strip():
        add("name", "A rule needs a name.")
    if values.get("trigger_type") not in AutomationRule.Trigger.values:
        add("trigger_type", f"Allowed: {', '.join(AutomationRule.Trigger.values)}.")
    values["conditions"], problems = clean_conditions(values.get("conditions"))
    for problem in problems:
        add("conditions", problem)
    hours = values.get("no_reply_hours")
    if values.get("trigger_type") == AutomationRule.Trigger.NO_REPLY:
        if not isinstance(hours, int) or isinstance(hours, bool) or not 1 <= hours <= MAX_NO_REPLY_HOURS:
            add("no_reply_hours", f"A no_reply rule needs the hours without an answer (1 to {MAX_NO_REPLY_HOURS}).")
    else:
        values["no_reply_hours"] = None
    start, end = values.get("quiet_hours_start"), values.get("quiet_hours_end")
    if (start is None) != (end is None):
        add("quiet_hours", "Give both the start and the end of the quiet hours, or neither.")
    elif start is not None and start == end:
        add("quiet_hours", "The quiet hours start and end at the same time.")
    cap = values.get("max_sends_per_lead_per_day")
    if not isinstance(cap, int) or isinstance(cap, bool) or not 1 <= cap <= MAX_DAILY_CAP:
        add("max_sends_per_lead_per_day", f"From 1 to {MAX_DAILY_CAP}.")
    return errors


def step_errors(account: Account, steps: list[dict[str, Any]], *, previous: dict[int, int] | None = None,
                prefix: str = "steps") -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Check the steps and resolve their templates. ``steps``: [{order?, delay_minutes, template | template_id,
    variables}] in their order; ``previous``: order -> template id the rule has now. Returns the clean steps
    ({order, delay_minutes, template, variables}) and errors keyed ``steps.<index>.<field>``."""
    previous = previous or {}
    errors: dict[str, list[str]] = {}
    if not steps:
        errors[prefix] = ["A rule needs at least one step."]
    elif len(steps) > MAX_STEPS:
        errors[prefix] = [f"At most {MAX_STEPS} steps."]
    if errors:
        return [], errors
    ids = {s.get("template_id") for s in steps if isinstance(s.get("template_id"), int)}
    templates = {t.pk: t for t in MessageTemplate.objects.filter(account=account, pk__in=ids)}
    clean, orders = [], set()
    for index, step in enumerate(steps):
        key = f"{prefix}.{index}"
        order = step.get("order") or index + 1
        if order in orders:
            errors.setdefault(f"{key}.order", []).append(f"Two steps have order {order}.")
        orders.add(order)
        template = step.get("template")
        if template is None:
            template = templates.get(step.get("template_id"))
        if template is None or template.account_id != account.pk:
            errors.setdefault(f"{key}.template_id", []).append("No template with this id in this account.")
            continue
        if not template.is_approved and previous.get(order) != template.pk:
            errors.setdefault(f"{key}.template_id", []).append(
                f"Template {template.name} is {template.status}: only APPROVED templates can be sent.")
        delay = step.get("delay_minutes", 0)
        if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay <= MAX_DELAY_MINUTES:
            errors.setdefault(f"{key}.delay_minutes", []).append(f"From 0 to {MAX_DELAY_MINUTES} minutes.")
        variables = step.get("variables") if step.get("variables") is not None else {}
        if isinstance(variables, dict) and not all(isinstance(v, str) for v in variables.values()):
            problems = ["Each placeholder maps to a field name (text), e.g. {\"1\": \"lead.first_name\"}."]
        else:
            problems = variable_errors(template.components, template.parameter_format, variables)
        for problem in problems:
            errors.setdefault(f"{key}.variables", []).append(problem)
        clean.append({"order": order, "delay_minutes": delay, "template": template, "variables": variables})
    return clean, errors


def _complete(rule: AutomationRule | None, data: dict[str, Any]) -> dict[str, Any]:
    """The rule's values after applying ``data`` (a partial update keeps what it does not name)."""
    values = {name: getattr(rule, name) for name in RULE_FIELDS} if rule is not None else dict(DEFAULTS)
    if "quiet_hours" in data:
        quiet = data["quiet_hours"] or {}
        values["quiet_hours_start"], values["quiet_hours_end"] = quiet.get("start"), quiet.get("end")
    values.update({name: data[name] for name in RULE_FIELDS if name in data})
    return values


def validate_rule(account: Account, data: dict[str, Any], *, rule: AutomationRule | None = None,
                  prefix: str = "") -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """The complete field values and the clean steps (None: steps untouched); RuleInvalid / 409 otherwise."""
    values = _complete(rule, data)
    errors = {f"{prefix}{k}": v for k, v in rule_field_errors(values).items()}
    steps = None
    if "steps" in data or rule is None:
        previous = {s.order: s.template_id for s in rule.steps.all()} if rule is not None else {}
        steps, problems = step_errors(account, data.get("steps") or [], previous=previous, prefix=f"{prefix}steps")
        errors.update(problems)
    if errors:
        raise RuleInvalid(errors)
    if values["is_active"]:
        key = AutomationRule.conditions_key_of(values["conditions"])
        twins = AutomationRule.objects.filter(account=account, is_active=True, trigger_type=values["trigger_type"], conditions_key=key)
        if twins.exclude(pk=rule.pk if rule is not None else None).exists():
            raise duplicate_rule(values["trigger_type"])
    return values, steps


# -- writes ------------------------------------------------------------------------------------------------------
def save_rule(account: Account, data: dict[str, Any], *, actor=None, rule: AutomationRule | None = None,
              request=None, audit: bool = True) -> AutomationRule:
    """Create (``rule`` None or unsaved) or update a rule and its steps in one transaction.

    ``data``: any of RULE_FIELDS, ``quiet_hours`` ({start, end} or None) and ``steps`` (replaces them
    all; a step keeps its row while its order stays)."""
    existing = rule if rule is not None and rule.pk else None
    values, steps = validate_rule(account, data, rule=existing)
    creating = existing is None
    rule = rule if rule is not None else AutomationRule(account=account)
    rule.account = account
    for name, value in values.items():
        setattr(rule, name, value)
    if creating:
        rule.created_by = actor if getattr(actor, "is_authenticated", False) else None
    try:
        with transaction.atomic():
            # An update writes only the rule's own fields: a flag a webhook set meanwhile is not overwritten.
            rule.save(update_fields=None if creating else [*RULE_FIELDS, "updated_at"])
            if steps is not None:
                _write_steps(rule, steps)
            refresh_rule_flags(account, rules=[AutomationRule.objects.prefetch_related("steps__template").get(pk=rule.pk)])
            if audit:
                record_event("automation.rule.created" if creating else "automation.rule.updated", account=account,
                             actor=actor, target=rule, request=request, name=rule.name, is_active=rule.is_active,
                             fields=sorted(data))
    except IntegrityError:
        if creating:
            rule.pk = None
        raise duplicate_rule(values["trigger_type"]) from None
    rule.refresh_from_db()
    return rule


def _write_steps(rule: AutomationRule, steps: list[dict[str, Any]]) -> None:
    current = {step.order: step for step in rule.steps.all()}
    wanted = {step["order"]: step for step in steps}
    RuleStep.objects.filter(rule=rule, order__in=set(current) - set(wanted)).delete()
    for order, step in wanted.items():
        row = current.get(order) or RuleStep(account=rule.account, rule=rule, order=order)
        row.delay_minutes, row.template, row.variables = step["delay_minutes"], step["template"], step["variables"]
        row.save()


def save_rules_bulk(account: Account, rules: list[dict[str, Any]], *, actor=None, request=None) -> tuple[int, int]:
    """The original client's POST {"rules": [...]}: items with ``id`` update that rule, others create one.
    All or nothing. Returns (rules written, rules the account has now)."""
    if not rules:
        raise RuleInvalid({"rules": ["Send at least one rule."]})
    ids = [item["id"] for item in rules if item.get("id") is not None]
    if len(ids) != len(set(ids)):
        raise RuleInvalid({"rules": ["A rule id appears twice."]})
    found = {r.pk: r for r in AutomationRule.objects.filter(account=account, pk__in=ids)}
    with transaction.atomic():
        for index, item in enumerate(rules):
            rule_id = item.get("id")
            rule = found.get(rule_id) if rule_id is not None else None
            if rule_id is not None and rule is None:
                raise RuleNotFound(f"rules.{index}: no rule {rule_id} in this account.")
            data = {k: v for k, v in item.items() if k != "id"}
            try:
                save_rule(account, data, actor=actor, rule=rule, request=request)
            except RuleInvalid as error:
                raise RuleInvalid({f"rules.{index}.{k}": v for k, v in error.fields.items()}) from None
        count = AutomationRule.objects.filter(account=account).count()
    return len(rules), count


def delete_rule(rule: AutomationRule, *, actor=None, request=None) -> None:
    """Delete the rule and its steps; its queued sends end skipped (the send log keeps the rule's name)."""
    with transaction.atomic():
        MessageSend.objects.filter(rule=rule, status=MessageSend.Status.QUEUED).update(
            status=MessageSend.Status.SKIPPED, skip_reason=MessageSend.SkipReason.RULE_INACTIVE)
        record_event("automation.rule.deleted", account=rule.account, actor=actor, target=rule, request=request, name=rule.name)
        rule.delete()


# -- reads -------------------------------------------------------------------------------------------------------
def counters_by_rule(rule_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per rule: every send, and how many reached sent, delivered, read, failed, skipped (services.counters)."""
    return counters_by("rule_id", rule_ids)


def preview_rule(rule: AutomationRule, lead: Lead) -> list[dict[str, Any]]:
    """Each step as ``lead`` would read it, rendered by the code that renders sends."""
    opportunity = Opportunity.objects.filter(lead=lead).order_by("-created_at", "-id").select_related("seller").first()
    context = SendContext(account=rule.account, lead=lead, opportunity=opportunity)
    messages = []
    for step in rule.steps.select_related("template").order_by("order"):
        variables = step.variables if isinstance(step.variables, dict) else {}
        text = rendered_text(step.template.components, values_for(variables, context))
        messages.append({"order": step.order, "delay_minutes": step.delay_minutes, "template_name": step.template.name,
                         "template_status": step.template.status, **text})
    return messages


def quiet_hours_of(rule: AutomationRule) -> dict[str, str] | None:
    if rule.quiet_hours_start is None or rule.quiet_hours_end is None:
        return None
    return {"start": _hhmm(rule.quiet_hours_start), "end": _hhmm(rule.quiet_hours_end)}


def _hhmm(value: dt.time) -> str:
    return value.strftime("%H:%M")
