"""Template variables: the whitelist of fields a step may map, validation, and rendering.

A step's ``variables`` maps each placeholder of its template to a whitelisted field:
``{"1": "lead.first_name", "2": "lead.meta_ad_headline"}`` for a POSITIONAL template,
``{"first_name": "lead.first_name"}`` for a NAMED one. A placeholder that appears in both the
header and the body takes the same value in both. The same code renders the Graph ``components``
of a send and the text of the admin's and the API's preview, so what staff see is what goes out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

from crm_marketing.models import Account, Lead, Opportunity

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
POSITIONAL_NAME = re.compile(r"^[1-9][0-9]*$")
NAMED_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# Meta refuses empty parameters; a missing value is sent as this rather than failing the send.
EMPTY_VALUE = "-"
MAX_PARAMETER_LENGTH = 1024


@dataclass(frozen=True)
class SendContext:
    """What a step's variables can read: the lead, its latest opportunity, its seller, the account."""

    account: Account
    lead: Lead
    opportunity: Opportunity | None = None

    @property
    def seller(self):
        if self.opportunity is not None and self.opportunity.seller_id:
            return self.opportunity.seller
        return self.lead.seller if self.lead.seller_id else None


def _money(opportunity: Opportunity | None) -> str:
    if opportunity is None:
        return ""
    return f"{Decimal(opportunity.amount):,.2f} {opportunity.currency}"


def _seller_name(ctx: SendContext) -> str:
    seller = ctx.seller
    if seller is None:
        return ""
    return (seller.get_full_name() or seller.get_username()).strip()


# field -> (label, getter). The only fields a rule can put in a message.
VARIABLE_FIELDS: dict[str, tuple[str, Callable[[SendContext], Any]]] = {
    "lead.first_name": ("Lead first name", lambda c: c.lead.first_name),
    "lead.last_name": ("Lead last name", lambda c: c.lead.last_name),
    "lead.full_name": ("Lead full name", lambda c: c.lead.name),
    "lead.email": ("Lead email", lambda c: c.lead.email),
    "lead.phone": ("Lead phone", lambda c: c.lead.phone or ""),
    "lead.status": ("Lead status", lambda c: c.lead.get_status_display()),
    "lead.ad_headline": ("Headline of the ad that brought the lead", lambda c: c.lead.meta_ad_headline),
    "opportunity.title": ("Opportunity title", lambda c: c.opportunity.title if c.opportunity else ""),
    "opportunity.stage": ("Opportunity stage", lambda c: c.opportunity.get_stage_display() if c.opportunity else ""),
    "opportunity.amount": ("Opportunity amount", lambda c: _money(c.opportunity)),
    "seller.first_name": ("Seller first name", lambda c: c.seller.first_name if c.seller else ""),
    "seller.full_name": ("Seller name", _seller_name),
    "account.name": ("Business name", lambda c: c.account.name),
}


def _text_components(components: Any) -> list[tuple[str, str]]:
    """(type, text) of the components that can carry placeholders: HEADER (text format) and BODY."""
    found = []
    for component in components if isinstance(components, list) else []:
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type") or "").upper()
        if kind == "BODY" or (kind == "HEADER" and str(component.get("format") or "TEXT").upper() == "TEXT"):
            text = component.get("text")
            if isinstance(text, str):
                found.append((kind, text))
    return found


def placeholders(components: Any) -> list[str]:
    """The template's distinct placeholders in order of first appearance (header, then body)."""
    seen: list[str] = []
    for _kind, text in _text_components(components):
        for name in PLACEHOLDER.findall(text):
            if name not in seen:
                seen.append(name)
    return seen


def variable_errors(components: Any, parameter_format: str, variables: Any) -> list[str]:
    """Why ``variables`` cannot fill this template; an empty list when they fit exactly."""
    if not isinstance(variables, dict):
        return ["Variables must be an object mapping each placeholder to a field."]
    expected = placeholders(components)
    errors: list[str] = []
    shape = POSITIONAL_NAME if parameter_format == "POSITIONAL" else NAMED_NAME
    wrong_shape = [name for name in expected if not shape.match(name)]
    if wrong_shape:
        errors.append(f"The template's placeholders {wrong_shape} do not match its {parameter_format} parameter format.")
    missing = [name for name in expected if name not in variables]
    extra = [str(name) for name in variables if name not in expected]
    if missing or extra:
        errors.append(f"The template has {len(expected)} variable(s) ({', '.join(expected) or 'none'}); "
                      f"the step maps {len(variables)}" + (f", missing {missing}" if missing else "")
                      + (f", unknown {extra}" if extra else "") + ".")
    unknown_fields = sorted({str(field) for field in variables.values() if field not in VARIABLE_FIELDS})
    if unknown_fields:
        errors.append(f"Not allowed in messages: {unknown_fields}. Allowed: {sorted(VARIABLE_FIELDS)}.")
    return errors


def values_for(variables: dict[str, str], ctx: SendContext) -> dict[str, str]:
    """Each placeholder's text for this lead; empty fields become EMPTY_VALUE, long ones are cut."""
    values = {}
    for name, field in variables.items():
        getter = VARIABLE_FIELDS.get(field)
        text = str(getter[1](ctx) if getter else "").strip()
        values[str(name)] = (text or EMPTY_VALUE)[:MAX_PARAMETER_LENGTH]
    return values


def graph_components(components: Any, parameter_format: str, values: dict[str, str]) -> list[dict[str, Any]]:
    """The ``template.components`` of a Cloud API send: one entry per component with placeholders."""
    payload = []
    for kind, text in _text_components(components):
        names = []
        for name in PLACEHOLDER.findall(text):
            if name not in names:
                names.append(name)
        if not names:
            continue
        if parameter_format == "POSITIONAL":
            names.sort(key=int)
            parameters = [{"type": "text", "text": values.get(name, EMPTY_VALUE)} for name in names]
        else:
            parameters = [{"type": "text", "parameter_name": name, "text": values.get(name, EMPTY_VALUE)} for name in names]
        payload.append({"type": kind.lower(), "parameters": parameters})
    return payload


def rendered_text(components: Any, values: dict[str, str]) -> dict[str, Any]:
    """What the lead reads: {header, body, footer, buttons} with the placeholders filled in."""
    def fill(text: str) -> str:
        return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)

    result: dict[str, Any] = {"header": "", "body": "", "footer": "", "buttons": []}
    for component in components if isinstance(components, list) else []:
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type") or "").upper()
        text = component.get("text") if isinstance(component.get("text"), str) else ""
        if kind in ("HEADER", "BODY", "FOOTER"):
            result[kind.lower()] = fill(text)
        elif kind == "BUTTONS":
            result["buttons"] = [str(b.get("text") or "") for b in component.get("buttons") or [] if isinstance(b, dict)]
    return result


def field_text(variables: dict[str, str]) -> dict[str, str]:
    """Placeholders shown as the fields they map to ("{{1}}" -> "[Lead first name]"), for a preview
    without a lead."""
    return {str(name): f"[{VARIABLE_FIELDS[field][0]}]" if field in VARIABLE_FIELDS else f"[{field}]"
            for name, field in variables.items()}
