"""Sandbox routes for Meta assets: the WABAs businesses own, their phone numbers, the user's pages
(with page access tokens) and webhook subscriptions (`subscribed_apps`) of WABAs and pages."""
from __future__ import annotations

import time
from typing import Any

from .request import GraphFault, GraphRequest, not_found, select

PHONE_FIELDS = ("id", "display_phone_number", "verified_name", "quality_rating", "messaging_limit_tier", "throughput")
STANDARD_MPS = 80


def load_wabas(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The fixture's WABAs; an older fixture's single `whatsapp` block becomes one WABA of the first business."""
    if "whatsapp_business_accounts" in data:
        return data["whatsapp_business_accounts"]
    legacy = data.get("whatsapp")
    if not legacy:
        return []
    business = next(iter(data.get("businesses") or []), {})
    if business and legacy["waba_id"] not in business.setdefault("owned_whatsapp_business_accounts", []):
        business["owned_whatsapp_business_accounts"].append(legacy["waba_id"])
    digits = legacy.get("display_phone_number", "")
    return [{"id": legacy["waba_id"], "name": "WhatsApp", "business_id": business.get("id", ""),
             "phone_numbers": [phone_number(legacy["phone_number_id"], digits)],
             "message_templates": legacy.get("message_templates", [])}]


def phone_number(phone_number_id: str, display_phone_number: str, *, verified_name: str | None = None,
                 throughput_mps: int = STANDARD_MPS, quality_rating: str = "GREEN",
                 messaging_limit_tier: str = "TIER_1K") -> dict[str, Any]:
    """A phone number as the fixture stores it (underscored keys are the sandbox's, never served)."""
    return {"id": phone_number_id, "display_phone_number": display_phone_number,
            "verified_name": verified_name or f"Sandbox {phone_number_id}", "quality_rating": quality_rating,
            "messaging_limit_tier": messaging_limit_tier,
            "throughput": {"level": "STANDARD" if throughput_mps <= STANDARD_MPS else "HIGH"},
            "_throughput_mps": int(throughput_mps),
            "_display_digits": "".join(c for c in display_phone_number if c.isdigit())}


def visible_wabas(state: Any, user_id: str) -> list[str]:
    ids: list[str] = []
    for business in state.users.get(user_id, {}).get("businesses", []):
        ids += [w for w in state.businesses.get(business, {}).get("owned_whatsapp_business_accounts", []) if w not in ids]
    return ids


def _waba_for(state: Any, user_id: str, waba_id: str) -> dict[str, Any]:
    if waba_id not in visible_wabas(state, user_id):
        raise not_found(waba_id)
    return state.wabas[waba_id]


def list_owned_wabas(state: Any, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    if node not in state.users[user_id].get("businesses", []):
        raise not_found(node)
    items = [{"id": w, "name": state.wabas[w]["name"]} for w in state.businesses[node].get("owned_whatsapp_business_accounts", [])
             if w in state.wabas]
    return req.page([select(i, req.fields()) for i in items])


def get_waba(state: Any, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    waba = _waba_for(state, user_id, node)
    return select({k: v for k, v in waba.items() if k not in ("phone_numbers", "message_templates", "business_id")},
                  req.fields())


def phone_view(phone: dict[str, Any]) -> dict[str, Any]:
    return {k: phone[k] for k in PHONE_FIELDS if k in phone}


def list_phone_numbers(state: Any, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    waba = _waba_for(state, user_id, node)
    items = [phone_view(state.phone_numbers[p["id"]]) for p in waba.get("phone_numbers", [])]
    return req.page([select(i, req.fields()) for i in items])


def get_phone_number(state: Any, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    phone = state.phone_numbers[node]
    _waba_for(state, user_id, phone["_waba_id"])
    return select(phone_view(phone), req.fields())


def _subscribe(state: Any, kind: str, object_id: str, fields: list[str]) -> dict[str, Any]:
    state.subscriptions.append({"object": kind, "id": object_id, "subscribed_fields": fields, "at": time.time()})
    return {"success": True}


def _subscribed(state: Any, kind: str, object_id: str) -> dict[str, Any]:
    fields = [s["subscribed_fields"] for s in state.subscriptions if s["object"] == kind and s["id"] == object_id]
    if not fields:
        return {"data": []}
    app = {"id": state.app_id, "name": state.application}
    if kind == "waba":
        return {"data": [{"whatsapp_business_api_data": app}]}
    return {"data": [dict(app, subscribed_fields=fields[-1])]}


def waba_subscribed_apps(state: Any, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    _waba_for(state, user_id, node)
    if req.method == "POST":
        return _subscribe(state, "waba", node, ["messages", "message_template_status_update", "user_preferences"])
    return _subscribed(state, "waba", node)


# -- pages -------------------------------------------------------------------------------------------------
def list_my_pages(state: Any, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    """me/accounts: the user's pages, each with its page access token (as Meta answers)."""
    items = [{"id": p, "name": state.pages[p]["name"], "category": state.pages[p].get("category", ""),
              "access_token": state.pages[p].get("access_token", ""), "tasks": ["ADVERTISE", "ANALYZE", "MANAGE"]}
             for p in state.users[user_id].get("pages", []) if p in state.pages]
    return req.page([select(i, req.fields()) for i in items])


def page_view(page: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in page.items() if k != "access_token"}


def page_token_call(state: Any, req: GraphRequest, page_id: str) -> dict[str, Any]:
    """What a page access token may do: read its page, its leads, and (un)subscribe its webhooks."""
    segs = [s for s in req.path.split("/") if s]
    node, edge = (segs + [None, None])[:2]
    if node == page_id and edge is None and req.method == "GET":
        return select(page_view(state.pages[page_id]), req.fields())
    if node == page_id and edge == "subscribed_apps":
        if req.method == "POST":
            fields = [f for f in str(req.param("subscribed_fields") or "").split(",") if f]
            if not fields:
                raise GraphFault("(#100) The parameter subscribed_fields is required.", code=100)
            return _subscribe(state, "page", page_id, fields)
        return _subscribed(state, "page", page_id)
    lead = state.leads.get(node or "")
    if lead is not None and edge is None and state.forms.get(lead["form_id"], {}).get("page_id") == page_id:
        return select(lead, req.fields())
    raise not_found(node or "")


def page_with_user_token(state: Any, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    if node not in state.users[user_id].get("pages", []):
        raise not_found(node)
    return select(page_view(state.pages[node]), req.fields())


def page_subscribed_apps_needs_page_token(state: Any, req: GraphRequest, user_id: str, node: str) -> dict[str, Any]:
    raise GraphFault("(#210) A page access token is required to request this resource.", code=210)
