"""Campaigns, ad sets and ads of an ad account, upserted by (account, Meta id).

Paused, archived and deleted objects are listed too, so that old spend keeps its names. Ads that
only show up in insights (deleted long ago) get rows named from the insight rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from django.db import transaction

from crm_marketing.meta_time import parse_meta_time
from marketing.models import Ad, AdAccount, AdSet, Campaign
from marketing.services.metered import MeteredGraph

CAMPAIGN_FIELDS = ("id,name,status,effective_status,objective,daily_budget,lifetime_budget,start_time,stop_time,"
                   "created_time,updated_time")
ADSET_FIELDS = "id,name,status,effective_status,campaign_id,daily_budget,lifetime_budget,created_time,updated_time"
AD_FIELDS = "id,name,status,effective_status,campaign_id,adset_id,created_time,updated_time"
# Every status Meta lists per edge: without the filter, archived and deleted objects are left out.
CAMPAIGN_STATUSES = ["ACTIVE", "PAUSED", "ARCHIVED", "DELETED", "CAMPAIGN_PAUSED", "IN_PROCESS", "WITH_ISSUES"]
ADSET_STATUSES = CAMPAIGN_STATUSES + ["ADSET_PAUSED"]
AD_STATUSES = ADSET_STATUSES + ["PENDING_REVIEW", "DISAPPROVED", "PREAPPROVED", "PENDING_BILLING_INFO"]
PAGE_SIZE = 500
BATCH_SIZE = 1000


@dataclass(frozen=True)
class EntityCounts:
    campaigns: int = 0
    adsets: int = 0
    ads: int = 0

    @property
    def total(self) -> int:
        return self.campaigns + self.adsets + self.ads


def parse_budget(value: Any) -> int | None:
    """Budgets come as strings in the currency's minor unit ("150000" = 1,500.00)."""
    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


def _common(ad_account: AdAccount, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "account_id": ad_account.account_id, "ad_account": ad_account, "name": (item.get("name") or "")[:400],
        "status": item.get("status") or "", "effective_status": item.get("effective_status") or "",
        "created_time": parse_meta_time(item.get("created_time")),
        "updated_time": parse_meta_time(item.get("updated_time")),
    }


EDGES = (("campaigns", CAMPAIGN_FIELDS, CAMPAIGN_STATUSES), ("adsets", ADSET_FIELDS, ADSET_STATUSES),
         ("ads", AD_FIELDS, AD_STATUSES))


def _list_edges(graph: MeteredGraph, ad_account: AdAccount) -> list[list[dict]]:
    """Every item of the three edges: their first pages in one Graph batch call (one HTTP call instead of
    three, which for most ad accounts is the whole listing), then each edge's further pages by its next link."""
    calls = [(f"{ad_account.meta_ad_account_id}/{edge}", {"fields": fields, "effective_status": statuses, "limit": PAGE_SIZE})
             for edge, fields, statuses in EDGES]
    listings = []
    for first in graph.batch(calls):
        items = list(first.get("data") or [])
        next_url = (first.get("paging") or {}).get("next")
        if items and next_url:
            items += [item for page in graph.iter_pages(next_url, next_link=True) for item in page]
        listings.append(items)
    return listings


def _ids(model, ad_account: AdAccount, id_field: str, meta_ids: Iterable[str]) -> dict[str, int]:
    rows = model.objects.filter(account_id=ad_account.account_id, **{f"{id_field}__in": list(meta_ids)})
    return dict(rows.values_list(id_field, "pk"))


_SHARED = ["ad_account", "name", "status", "effective_status", "created_time", "updated_time", "synced_at"]


def sync_entities(ad_account: AdAccount, *, graph: MeteredGraph) -> EntityCounts:
    """List the three edges (all pages, first ones batched), then upsert them in one transaction."""
    campaigns, adsets, ads = _list_edges(graph, ad_account)
    with transaction.atomic():
        Campaign.objects.bulk_create(
            [Campaign(**_common(ad_account, c), meta_campaign_id=c["id"], objective=c.get("objective") or "",
                      daily_budget=parse_budget(c.get("daily_budget")),
                      lifetime_budget=parse_budget(c.get("lifetime_budget")),
                      start_time=parse_meta_time(c.get("start_time")), stop_time=parse_meta_time(c.get("stop_time")))
             for c in campaigns],
            batch_size=BATCH_SIZE, update_conflicts=True, unique_fields=["account", "meta_campaign_id"],
            update_fields=_SHARED + ["objective", "daily_budget", "lifetime_budget", "start_time", "stop_time"])
        campaign_pks = _ids(Campaign, ad_account, "meta_campaign_id",
                            {c["id"] for c in campaigns} | {s.get("campaign_id") for s in adsets + ads} - {None})
        AdSet.objects.bulk_create(
            [AdSet(**_common(ad_account, s), meta_adset_id=s["id"], meta_campaign_id=s.get("campaign_id") or "",
                   campaign_id=campaign_pks.get(s.get("campaign_id")),
                   daily_budget=parse_budget(s.get("daily_budget")),
                   lifetime_budget=parse_budget(s.get("lifetime_budget")))
             for s in adsets],
            batch_size=BATCH_SIZE, update_conflicts=True, unique_fields=["account", "meta_adset_id"],
            update_fields=_SHARED + ["meta_campaign_id", "campaign", "daily_budget", "lifetime_budget"])
        adset_pks = _ids(AdSet, ad_account, "meta_adset_id", {a.get("adset_id") for a in ads} - {None})
        Ad.objects.bulk_create(
            [Ad(**_common(ad_account, a), meta_ad_id=a["id"], meta_adset_id=a.get("adset_id") or "",
                meta_campaign_id=a.get("campaign_id") or "", adset_id=adset_pks.get(a.get("adset_id")),
                campaign_id=campaign_pks.get(a.get("campaign_id")))
             for a in ads],
            batch_size=BATCH_SIZE, update_conflicts=True, unique_fields=["account", "meta_ad_id"],
            update_fields=_SHARED + ["meta_adset_id", "meta_campaign_id", "adset", "campaign"])
    return EntityCounts(len(campaigns), len(adsets), len(ads))


class AdDirectory:
    """The ad ids an ad account already has rows for; creates rows for ads first seen in insights."""

    def __init__(self, ad_account: AdAccount) -> None:
        self.ad_account = ad_account
        ads = Ad.objects.filter(account_id=ad_account.account_id)
        self.known: set[str] = set(ads.values_list("meta_ad_id", flat=True))

    def ensure(self, rows: Iterable[dict[str, Any]]) -> int:
        """Create Campaign / AdSet / Ad rows (with the insight rows' names) for unknown ads; returns ads created."""
        missing: dict[str, dict[str, Any]] = {}
        for row in rows:
            ad_id = row.get("ad_id")
            if ad_id and ad_id not in self.known and ad_id not in missing:
                missing[ad_id] = row
        if not missing:
            return 0
        ad_account, account_id = self.ad_account, self.ad_account.account_id
        with transaction.atomic():
            Campaign.objects.bulk_create(
                [Campaign(account_id=account_id, ad_account=ad_account, meta_campaign_id=r["campaign_id"],
                          name=(r.get("campaign_name") or r["campaign_id"])[:400])
                 for r in {r["campaign_id"]: r for r in missing.values() if r.get("campaign_id")}.values()],
                ignore_conflicts=True)
            campaign_ids = {r.get("campaign_id") for r in missing.values()} - {None}
            campaign_pks = _ids(Campaign, ad_account, "meta_campaign_id", campaign_ids)
            AdSet.objects.bulk_create(
                [AdSet(account_id=account_id, ad_account=ad_account, meta_adset_id=r["adset_id"],
                       meta_campaign_id=r.get("campaign_id") or "", campaign_id=campaign_pks.get(r.get("campaign_id")),
                       name=(r.get("adset_name") or r["adset_id"])[:400])
                 for r in {r["adset_id"]: r for r in missing.values() if r.get("adset_id")}.values()],
                ignore_conflicts=True)
            adset_pks = _ids(AdSet, ad_account, "meta_adset_id", {r.get("adset_id") for r in missing.values()} - {None})
            Ad.objects.bulk_create(
                [Ad(account_id=account_id, ad_account=ad_account, meta_ad_id=ad_id,
                    meta_adset_id=r.get("adset_id") or "", meta_campaign_id=r.get("campaign_id") or "",
                    adset_id=adset_pks.get(r.get("adset_id")), campaign_id=campaign_pks.get(r.get("campaign_id")),
                    name=(r.get("ad_name") or ad_id)[:400])
                 for ad_id, r in missing.items()],
                ignore_conflicts=True)
        self.known.update(missing)
        return len(missing)
