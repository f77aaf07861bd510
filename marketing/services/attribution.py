"""Lead attribution: Meta touches (Lead Ads form fills, Click-to-WhatsApp clicks) become leads.

Last Meta touch wins: every touch is a ``LeadTouch`` row (unique per account, source and Meta's
id), and the lead's attribution fields copy the touch with the latest ``touched_at``. A lead is
matched by E.164 phone, then by email (case-insensitive).
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from crm_marketing import events, services
from crm_marketing.errors import Conflict
from crm_marketing.graph import GraphClient, GraphError, is_meta_id
from crm_marketing.meta_time import parse_meta_time
from crm_marketing.models import E164, Account, Lead, LeadTouch
from marketing.models import Ad, AdAccount, AdSet, Campaign
from meta_oauth.services import client_for_account

log = logging.getLogger(__name__)

LEAD_FIELDS = "id,created_time,ad_id,ad_name,adset_id,adset_name,campaign_id,campaign_name,form_id,field_data,is_organic,platform"
AD_FIELDS = "id,name,effective_status,account_id,adset{id,name},campaign{id,name}"
ATTRIBUTION_FIELDS = ("lead_source", "meta_campaign_id", "meta_adset_id", "meta_ad_id", "meta_form_id",
                      "meta_ad_headline", "meta_ad_body", "ctwa_clid")
_E164 = re.compile(E164)


def normalize_phone(raw: Any, *, international: bool = False) -> str | None:
    """E.164 ("+5491155550001") or None. Digits without "+" or "00" are accepted only when the caller
    knows they carry the country code (``international``, e.g. a WhatsApp wa_id)."""
    text = str(raw or "").strip()
    digits = re.sub(r"\D", "", text)
    if text.startswith("+"):
        candidate = "+" + digits
    elif text.startswith("00"):
        candidate = "+" + digits[2:]
    elif international:
        candidate = "+" + digits
    else:
        return None
    return candidate if _E164.match(candidate) else None


@dataclass
class Touch:
    """One Meta touch, in the lead's vocabulary."""

    lead_source: str
    external_id: str
    touched_at: dt.datetime
    phone: str | None = None
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    meta_campaign_id: str = ""
    meta_adset_id: str = ""
    meta_ad_id: str = ""
    meta_form_id: str = ""
    meta_ad_headline: str = ""
    meta_ad_body: str = ""
    ctwa_clid: str = ""
    external_ids: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def attribution(self) -> dict[str, str]:
        limits = {"meta_ad_headline": 255, "ctwa_clid": 255, "meta_ad_body": 10_000}
        return {name: str(getattr(self, name) or "")[:limits.get(name, 32)] for name in ATTRIBUTION_FIELDS}


@dataclass(frozen=True)
class TouchResult:
    lead: Lead
    lead_created: bool
    touch_created: bool
    is_latest: bool


def split_name(full_name: str) -> tuple[str, str]:
    first, _, last = full_name.strip().partition(" ")
    return first, last.strip()


def touch_from_lead(data: dict[str, Any], *, form_id: str = "") -> Touch:
    """A Lead Ads lead (GET /{leadgen_id}, lead.json) as a touch."""
    fields: dict[str, Any] = {}
    for item in data.get("field_data") or []:
        if isinstance(item, dict) and item.get("name"):
            values = [str(v) for v in item.get("values") or []]
            fields[str(item["name"])] = values[0] if len(values) == 1 else values
    text = {k: v if isinstance(v, str) else ", ".join(v) for k, v in fields.items()}
    first, last = text.get("first_name", ""), text.get("last_name", "")
    if not first:
        first, last = split_name(text.get("full_name", ""))
    leadgen_id = str(data.get("id") or "")
    phone = normalize_phone(text.get("phone_number") or text.get("phone"))
    email = (text.get("email") or "").strip().lower()
    names = {f"meta_{kind}_name": data[f"{kind}_name"] for kind in ("campaign", "adset", "ad") if data.get(f"{kind}_name")}
    return Touch(
        lead_source=Lead.Source.META_LEAD_ADS, external_id=leadgen_id,
        touched_at=parse_meta_time(data.get("created_time")) or timezone.now(),
        phone=phone, email=email[:254], first_name=(first or phone or email or f"Meta lead {leadgen_id}")[:120],
        last_name=last[:120], meta_campaign_id=str(data.get("campaign_id") or ""), meta_adset_id=str(data.get("adset_id") or ""),
        meta_ad_id=str(data.get("ad_id") or ""), meta_form_id=str(data.get("form_id") or form_id),
        external_ids={"meta_leadgen_id": leadgen_id, "meta_form_fields": fields, **names},
        details={"form_fields": fields, **names, "is_organic": data.get("is_organic"), "platform": data.get("platform")},
    )


def fetch_lead(client: GraphClient, leadgen_id: str) -> dict[str, Any]:
    return client.get(leadgen_id, {"fields": LEAD_FIELDS})


def fetch_leads(client: GraphClient, leadgen_ids: list[str]) -> list[dict[str, Any] | GraphError]:
    """Several leads in one Graph batch request (at most 50): each one's body or its GraphError, in order."""
    if len(leadgen_ids) == 1:  # a plain GET is one round trip too, and what Meta's lead retrieval guide shows
        try:
            return [fetch_lead(client, leadgen_ids[0])]
        except GraphError as error:
            return [error]
    return client.batch([(leadgen_id, {"fields": LEAD_FIELDS}) for leadgen_id in leadgen_ids])


# -- lead + touch upsert -------------------------------------------------------------------------------------
def record_touch(account: Account, touch: Touch) -> TouchResult:
    """Create or update the touch and its lead. Idempotent: the same touch again changes nothing new."""
    for attempt in range(3):
        try:
            return _record_touch(account, touch)
        except (Conflict, IntegrityError):  # a concurrent writer stored the same phone or touch: look again
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _match_lead(account: Account, phone: str | None, email: str) -> Lead | None:
    leads = Lead.objects.for_account(account).select_for_update()
    if phone:
        lead = leads.filter(phone=phone).first()
        if lead is not None:
            return lead
    if email:
        return leads.filter(email__iexact=email).order_by("-created_at", "-id").first()
    return None


def _record_touch(account: Account, touch: Touch) -> TouchResult:
    attribution = touch.attribution()
    with transaction.atomic():
        existing = None
        if touch.external_id:
            existing = LeadTouch.objects.for_account(account).filter(
                lead_source=touch.lead_source, external_id=touch.external_id).first()
        lead = (Lead.objects.select_for_update().get(pk=existing.lead_id) if existing
                else _match_lead(account, touch.phone, touch.email))
        lead_created = lead is None
        if lead is None:
            lead = services.create_lead(account, **new_lead_fields(touch, attribution))
            is_latest = True
        else:
            newer = lead.touches.filter(touched_at__gt=touch.touched_at)
            is_latest = not (newer.exclude(pk=existing.pk) if existing else newer).exists()
            changes = _lead_changes(account, lead, touch, attribution if is_latest else None)
            if changes:
                services.update_lead(lead, **changes)
        if existing is None:
            new_touch_row(account, lead, touch, attribution).save()
        else:
            for name, value in {**_touch_ids(attribution), "details": touch.details, "touched_at": touch.touched_at}.items():
                setattr(existing, name, value)
            existing.save()
    return TouchResult(lead, lead_created, existing is None, is_latest)


def new_lead_fields(touch: Touch, attribution: dict[str, str]) -> dict[str, Any]:
    """The fields of the lead a touch creates (``services.create_lead``'s keywords)."""
    return dict(first_name=touch.first_name, last_name=touch.last_name, phone=touch.phone, email=touch.email,
                external_ids=touch.external_ids, created_at=min(touch.touched_at, timezone.now()), **attribution)


def new_touch_row(account: Account, lead: Lead, touch: Touch, attribution: dict[str, str]) -> LeadTouch:
    """The touch's row, unsaved."""
    return LeadTouch(account=account, lead=lead, lead_source=touch.lead_source, external_id=touch.external_id,
                     details=touch.details, touched_at=touch.touched_at, **_touch_ids(attribution))


def _touch_ids(attribution: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in attribution.items() if k.startswith("meta_") and k not in ("meta_ad_headline", "meta_ad_body")}


def _lead_changes(account: Account, lead: Lead, touch: Touch, attribution: dict[str, str] | None) -> dict[str, Any]:
    """What the touch changes on an existing lead: the attribution when it is the latest touch, the
    external ids, and blanks filled (names, phone and email a seller typed are kept)."""
    wanted: dict[str, Any] = dict(attribution or {})
    if attribution is not None:
        wanted["external_ids"] = {**(lead.external_ids or {}), **touch.external_ids}
    if not lead.email and touch.email:
        wanted["email"] = touch.email
    if lead.phone is None and touch.phone and not Lead.objects.for_account(account).filter(phone=touch.phone).exists():
        wanted["phone"] = touch.phone
    if not lead.last_name and touch.last_name and lead.first_name == touch.first_name:
        wanted["last_name"] = touch.last_name
    return {name: value for name, value in wanted.items() if getattr(lead, name) != value}


def note_inbound(lead: Lead, at: dt.datetime) -> bool:
    """Move ``last_inbound_at`` forward (never back); True when it moved."""
    moved = Lead.objects.filter(pk=lead.pk).filter(Q(last_inbound_at__isnull=True) | Q(last_inbound_at__lt=at)).update(
        last_inbound_at=at, updated_at=timezone.now())
    return bool(moved)


def publish_replied(lead: Lead, *, message_id: str, at: dt.datetime) -> None:
    events.publish(events.LEAD_REPLIED, account_id=lead.account_id, lead_id=lead.pk, message_id=message_id,
                   replied_at=at.isoformat())


# -- ads ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AdPath:
    ad_id: str
    adset_id: str = ""
    campaign_id: str = ""
    looked_up: bool = False  # True when Meta was asked


def ad_path_from_table(account: Account, ad_id: str) -> AdPath | None:
    ad = Ad.objects.for_account(account).select_related("adset", "campaign").filter(meta_ad_id=ad_id).first()
    if ad is None:
        return None
    adset_id = ad.meta_adset_id or (ad.adset.meta_adset_id if ad.adset else "")
    campaign_id = ad.meta_campaign_id or (ad.campaign.meta_campaign_id if ad.campaign else "")
    return AdPath(ad_id, adset_id, campaign_id)


def resolve_ad(account: Account, ad_id: str, *, client: GraphClient | None = None) -> AdPath:
    """The ad's ad set and campaign from our tables, else from GET /{ad_id} (stored for next time).

    Raises NotConnected or GraphError when Meta has to be asked and cannot answer."""
    known = ad_path_from_table(account, ad_id)
    if known is not None and known.campaign_id:
        return known
    data = (client or client_for_account(account)).get(ad_id, {"fields": AD_FIELDS})
    remember_ad(account, data)
    adset, campaign = data.get("adset") or {}, data.get("campaign") or {}
    return AdPath(ad_id, str(adset.get("id") or ""), str(campaign.get("id") or ""), looked_up=True)


def remember_ad(account: Account, data: dict[str, Any]) -> Ad | None:
    """Keep an ad Meta described (and its ad set and campaign) when we hold its ad account."""
    meta_account = str(data.get("account_id") or "")
    ad_account = AdAccount.objects.for_account(account).filter(
        meta_ad_account_id__in=[meta_account, f"act_{meta_account}"]).first() if meta_account else None
    adset, campaign = data.get("adset") or {}, data.get("campaign") or {}
    if ad_account is None or not data.get("id"):
        return None
    with transaction.atomic():
        campaign_row = None
        if campaign.get("id"):
            campaign_row, _ = Campaign.objects.get_or_create(
                account=account, meta_campaign_id=str(campaign["id"]),
                defaults={"ad_account": ad_account, "name": str(campaign.get("name") or campaign["id"])[:400]})
        adset_row = None
        if adset.get("id"):
            adset_row, _ = AdSet.objects.get_or_create(
                account=account, meta_adset_id=str(adset["id"]),
                defaults={"ad_account": ad_account, "campaign": campaign_row, "meta_campaign_id": str(campaign.get("id") or ""),
                          "name": str(adset.get("name") or adset["id"])[:400]})
        ad, _ = Ad.objects.get_or_create(
            account=account, meta_ad_id=str(data["id"]),
            defaults={"ad_account": ad_account, "campaign": campaign_row, "adset": adset_row,
                      "meta_adset_id": str(adset.get("id") or ""), "meta_campaign_id": str(campaign.get("id") or ""),
                      "name": str(data.get("name") or data["id"])[:400], "effective_status": str(data.get("effective_status") or "")[:32]})
    return ad


# -- backfill ----------------------------------------------------------------------------------------------------
@dataclass
class BackfillResult:
    forms: int = 0
    fetched: int = 0
    leads_created: int = 0
    touches_created: int = 0


def seen_form_ids(account: Account) -> list[str]:
    """The Lead Ads forms the account's leads came from (ids a user typed that are no Meta id are left out:
    they would become a Graph path)."""
    ids = set(Lead.objects.for_account(account).exclude(meta_form_id="").values_list("meta_form_id", flat=True))
    ids |= set(LeadTouch.objects.for_account(account).exclude(meta_form_id="").values_list("meta_form_id", flat=True))
    return sorted(form_id for form_id in ids if is_meta_id(form_id))


def backfill_form_leads(account: Account, *, client: GraphClient, since: dt.datetime,
                        form_ids: list[str] | None = None) -> BackfillResult:
    """Fetch the leads of every form we have seen created after ``since`` and record them as touches:
    the ones whose webhook Meta never delivered become leads. Raises GraphError."""
    result = BackfillResult()
    params = {"fields": LEAD_FIELDS, "limit": 100,
              "filtering": [{"field": "time_created", "operator": "GREATER_THAN", "value": int(since.timestamp())}]}
    for form_id in form_ids if form_ids is not None else seen_form_ids(account):
        result.forms += 1
        for page in client.iter_pages(f"{form_id}/leads", params):
            for row in page:
                touch = record_touch(account, touch_from_lead(row, form_id=form_id))
                result.fetched += 1
                result.leads_created += touch.lead_created
                result.touches_created += touch.touch_created
    return result
