"""Deterministic insight figures: the same seed, ad and day always give the same numbers."""
from __future__ import annotations

import datetime as dt
import random
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from .request import GraphFault, invalid_param, select

if TYPE_CHECKING:
    from .state import SandboxState

CPM_BY_CURRENCY = {"ARS": 2500.0, "USD": 7.0, "EUR": 6.0}
LEAD_ACTIONS = {
    "OUTCOME_LEADS": ("lead", "onsite_conversion.lead_grouped"),
    "OUTCOME_ENGAGEMENT": ("onsite_conversion.messaging_conversation_started_7d",),
}
LEVEL_KEYS = {
    "account": ("account_id", "account_name"),
    "campaign": ("campaign_id", "campaign_name"),
    "adset": ("campaign_id", "campaign_name", "adset_id", "adset_name"),
    "ad": ("campaign_id", "campaign_name", "adset_id", "adset_name", "ad_id", "ad_name"),
}
CENT = Decimal("0.01")


def campaign_days(state: SandboxState, campaign: dict[str, Any]) -> tuple[dt.date, dt.date]:
    today = state.today()
    start = today - dt.timedelta(days=campaign.get("start_days_ago") or 0)
    stop_ago = campaign.get("stop_days_ago")
    return start, (today - dt.timedelta(days=stop_ago)) if stop_ago is not None else today


def figures(seed: int, ad_id: str, day: dt.date, currency: str, factor: float = 1.0) -> dict[str, Any]:
    # A string seed is hashed with SHA-512 by `random`, so this is stable across processes.
    rng = random.Random(f"{seed}|{ad_id}|{day.isoformat()}")
    impressions = rng.randint(800, 20000)
    reach = int(impressions * rng.uniform(0.55, 0.85))
    clicks = max(1, int(impressions * rng.uniform(0.008, 0.03)))
    link_clicks = int(clicks * rng.uniform(0.7, 0.95))
    spend = impressions / 1000 * CPM_BY_CURRENCY.get(currency, 8.0) * rng.uniform(0.8, 1.2)
    leads = int(link_clicks * rng.uniform(0.01, 0.08))
    return {"spend": Decimal(str(spend * factor)).quantize(CENT, ROUND_HALF_UP),
            "impressions": int(impressions * factor), "reach": int(reach * factor),
            "clicks": int(clicks * factor), "inline_link_clicks": int(link_clicks * factor),
            "leads": int(leads * factor)}


def parse_time_range(state: SandboxState, value: Any) -> tuple[dt.date, dt.date]:
    if value is None:  # Meta's default date_preset is last_30d
        today = state.today()
        return today - dt.timedelta(days=30), today - dt.timedelta(days=1)
    try:
        since, until = dt.date.fromisoformat(value["since"]), dt.date.fromisoformat(value["until"])
    except (TypeError, KeyError, ValueError):
        raise invalid_param("time_range") from None
    if until < since:
        raise invalid_param("time_range")
    return since, until


def ad_day_rows(state: SandboxState, account: dict[str, Any], since: dt.date, until: dt.date) -> list[dict[str, Any]]:
    """One raw row per ad and day inside the range, the campaign's life and the generated span."""
    span_start = state.today() - dt.timedelta(days=state.days - 1)
    rows = []
    for ad in sorted(state.ads.values(), key=lambda a: int(a["id"])):
        adset = state.adsets[ad["adset_id"]]
        campaign = state.campaigns[adset["campaign_id"]]
        if campaign["account_id"] != account["id"]:
            continue
        start, stop = campaign_days(state, campaign)
        first, last = max(since, start, span_start), min(until, stop, state.today())
        actions = LEAD_ACTIONS.get(campaign.get("objective", ""), ("lead",))
        day = first
        while day <= last:
            row = figures(state.seed, ad["id"], day, account["currency"], state.restatement_factor(day))
            row.update(account_id=account["account_id"], account_name=account["name"],
                       campaign_id=campaign["id"], campaign_name=campaign["name"],
                       adset_id=adset["id"], adset_name=adset["name"], ad_id=ad["id"], ad_name=ad["name"],
                       date=day, lead_actions=actions)
            rows.append(row)
            day += dt.timedelta(days=1)
    return rows


def report(state: SandboxState, account: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Insight rows as Graph returns them for `params` (level, time_increment, time_range, fields)."""
    level = params.get("level") or "account"
    if level not in LEVEL_KEYS:
        raise invalid_param("level")
    increment = str(params.get("time_increment") or "all_days")
    if increment not in ("1", "all_days"):
        raise GraphFault("(#100) The sandbox supports time_increment=1 or all_days", code=100)
    since, until = parse_time_range(state, params.get("time_range"))
    groups: dict[tuple, dict[str, Any]] = {}
    for row in ad_day_rows(state, account, since, until):
        keys = tuple(row[k] for k in LEVEL_KEYS[level])
        span = (row["date"], row["date"]) if increment == "1" else (since, until)
        group = groups.setdefault(keys + span, _empty(row, level, span))
        for metric in ("spend", "impressions", "reach", "clicks", "inline_link_clicks"):
            group[metric] += row[metric]
        group["link_click"] += row["inline_link_clicks"]
        for action in row["lead_actions"]:
            group["actions"][action] = group["actions"].get(action, 0) + row["leads"]
    rows = [_format(g, account) for g in sorted(groups.values(), key=lambda g: (g["date_start"], g["_sort"]))]
    fields = params.get("fields")
    if fields:
        names = fields if isinstance(fields, list) else str(fields).split(",")
        wanted = {str(name).strip(): None for name in names}
        rows = [select(r, wanted, always=("date_start", "date_stop")) for r in rows]
    return rows


def _empty(row: dict[str, Any], level: str, span: tuple[dt.date, dt.date]) -> dict[str, Any]:
    group = {k: row[k] for k in LEVEL_KEYS[level]}
    group.update(spend=Decimal("0"), impressions=0, reach=0, clicks=0, inline_link_clicks=0, link_click=0,
                 actions={}, date_start=span[0].isoformat(), date_stop=span[1].isoformat(),
                 _sort=tuple(int(row[k]) for k in LEVEL_KEYS[level] if k.endswith("_id")))
    return group


def _format(group: dict[str, Any], account: dict[str, Any]) -> dict[str, Any]:
    spend, impressions, clicks = group["spend"], group["impressions"], group["clicks"]
    actions = [{"action_type": t, "value": str(v)} for t, v in group["actions"].items() if v]
    if group["link_click"]:
        actions.append({"action_type": "link_click", "value": str(group["link_click"])})
    out = {"account_id": account["account_id"], "account_name": account["name"],
           "account_currency": account["currency"]}
    out.update({k: v for k, v in group.items() if k.endswith(("_id", "_name"))})
    out.update(date_start=group["date_start"], date_stop=group["date_stop"], spend=str(spend),
               impressions=str(impressions), clicks=str(clicks),
               inline_link_clicks=str(group["inline_link_clicks"]), reach=str(group["reach"]))
    out["cpm"] = str((spend * 1000 / impressions).quantize(CENT)) if impressions else "0"
    out["cpc"] = str((spend / clicks).quantize(CENT)) if clicks else "0"
    out["ctr"] = str((Decimal(clicks) * 100 / impressions).quantize(Decimal("0.000001"))) if impressions else "0"
    if actions:
        out["actions"] = actions
        out["cost_per_action_type"] = [
            {"action_type": a["action_type"], "value": str((spend / int(a["value"])).quantize(CENT))}
            for a in actions if a["action_type"] != "link_click"]
    return out
