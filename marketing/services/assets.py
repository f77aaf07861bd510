"""Meta assets an account uses: its WhatsApp channel (a WABA's phone number) and its Facebook Pages.

Listing asks Meta what the token sees (all pages of every edge) and merges our stored rows; choosing
one checks Meta shows it, stores it under its unique Meta id (another account's id is a 409) and
subscribes our app to its webhooks, so webhooks find the account by that id. Page access tokens
are stored encrypted and never returned or logged."""
from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from typing import Any, Iterator

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from crm_marketing.audit import record_event
from crm_marketing.errors import Conflict, InvalidInput
from crm_marketing.graph import GraphClient, GraphError
from crm_marketing.tenancy import Account
from meta_oauth.models import MetaConnection, MetaPage, WhatsAppChannel
from meta_oauth.services import client_for_account, graph_errors, upstream_error

PAGE_SIZE = 100
PHONE_FIELDS = "id,display_phone_number,verified_name,quality_rating,messaging_limit_tier,throughput"
# Meta's throughput levels in messages per second: 80 by default, 1,000 once upgraded.
THROUGHPUT_MPS = {"STANDARD": 80, "HIGH": 1000}
DEFAULT_MPS = 80


@dataclass(frozen=True)
class Channel:
    """A WhatsApp phone number as the hub lists it; ``id`` is our row's, None when not stored."""

    id: int | None
    waba_id: str
    phone_number_id: str
    display_phone_number: str
    verified_name: str
    quality_rating: str
    messaging_limit_tier: str
    throughput_mps: int
    is_selected: bool


@dataclass(frozen=True)
class Page:
    id: int | None
    page_id: str
    name: str
    is_subscribed: bool


# -- WhatsApp channels -------------------------------------------------------------------------------------
def _live_phone_numbers(client: GraphClient) -> Iterator[tuple[str, dict[str, Any]]]:
    """(waba id, phone number) for every number of every WABA of every business the token sees."""
    seen: set[str] = set()
    for business in client.get_all("me/businesses", {"fields": "id", "limit": PAGE_SIZE}):
        wabas = client.get_all(f"{business['id']}/owned_whatsapp_business_accounts", {"fields": "id,name", "limit": PAGE_SIZE})
        for waba in wabas:
            for phone in client.get_all(f"{waba['id']}/phone_numbers", {"fields": PHONE_FIELDS, "limit": PAGE_SIZE}):
                if str(phone.get("id") or "") and str(phone["id"]) not in seen:
                    seen.add(str(phone["id"]))
                    yield str(waba["id"]), phone


def _mps(phone: dict[str, Any]) -> int:
    throughput = phone.get("throughput")
    level = throughput.get("level") if isinstance(throughput, dict) else None
    return THROUGHPUT_MPS.get(str(level or ""), DEFAULT_MPS)


def _live_fields(waba_id: str, phone: dict[str, Any]) -> dict[str, Any]:
    return {"meta_waba_id": waba_id, "display_phone_number": str(phone.get("display_phone_number") or "")[:32],
            "verified_name": str(phone.get("verified_name") or "")[:200],
            "quality_rating": str(phone.get("quality_rating") or "")[:16],
            "messaging_limit_tier": str(phone.get("messaging_limit_tier") or "")[:32], "throughput_mps": _mps(phone)}


def channel_view(row: WhatsAppChannel) -> Channel:
    return Channel(row.pk, row.meta_waba_id, row.meta_phone_number_id, row.display_phone_number, row.verified_name,
                   row.quality_rating, row.messaging_limit_tier, row.throughput_mps, row.is_selected)


def list_whatsapp_channels(account: Account) -> list[Channel]:
    """Every number the token sees (with our row's id and selection when stored), then stored numbers
    Meta no longer shows, so the selected one is always listed."""
    client = client_for_account(account, interactive=True)
    with closing(client), graph_errors(account):
        live = list(_live_phone_numbers(client))
    return _merged_channels(account, live)


def _merged_channels(account: Account, live: list[tuple[str, dict[str, Any]]]) -> list[Channel]:
    stored = {row.meta_phone_number_id: row for row in WhatsAppChannel.objects.for_account(account).order_by("pk")}
    channels = []
    for waba_id, phone in live:
        row, fields = stored.pop(str(phone["id"]), None), _live_fields(waba_id, phone)
        channels.append(Channel(row.pk if row else None, waba_id, str(phone["id"]), fields["display_phone_number"],
                                fields["verified_name"], fields["quality_rating"], fields["messaging_limit_tier"],
                                fields["throughput_mps"], bool(row and row.is_selected)))
    return channels + [channel_view(row) for row in stored.values()]


def select_whatsapp_channel(account: Account, phone_number_id: str, *, actor=None,
                            request=None) -> tuple[WhatsAppChannel, list[Channel]]:
    """Make the number (which the token must see) the account's channel and subscribe our app to its WABA.
    Returns the row and the list as GET shows it now (from the same answers of Meta)."""
    _refuse_if_taken(WhatsAppChannel.objects.filter(meta_phone_number_id=phone_number_id), account,
                     "This WhatsApp number is already connected to another account.")
    client = client_for_account(account, interactive=True)
    with closing(client), graph_errors(account):
        live = list(_live_phone_numbers(client))
        found = next(((w, p) for w, p in live if str(p["id"]) == phone_number_id), None)
        if found is None:
            raise InvalidInput({"phone_number_id": ["Meta does not show this phone number to the connected user."]})
        waba_id, phone = found
        client.post(f"{waba_id}/subscribed_apps")
    fields = {**_live_fields(waba_id, phone), "is_selected": True, "subscribed_at": timezone.now()}
    with transaction.atomic():
        list(MetaConnection.objects.select_for_update().filter(account=account))  # one choice at a time
        WhatsAppChannel.objects.filter(account=account, is_selected=True).exclude(
            meta_phone_number_id=phone_number_id).update(is_selected=False)
        try:
            with transaction.atomic():
                channel, _ = WhatsAppChannel.objects.update_or_create(
                    account=account, meta_phone_number_id=phone_number_id, defaults=fields)
        except IntegrityError:
            raise Conflict("This WhatsApp number is already connected to another account.") from None
        record_event("meta.whatsapp_channel.select", account=account, actor=actor, target=channel, request=request,
                     meta_waba_id=waba_id, meta_phone_number_id=phone_number_id)
    return channel, _merged_channels(account, live)


def _refuse_if_taken(rows, account: Account, message: str) -> None:
    if rows.exclude(account=account).exists():
        raise Conflict(message)


# -- pages -------------------------------------------------------------------------------------------------
def page_view(row: MetaPage) -> Page:
    return Page(row.pk, row.meta_page_id, row.name, row.is_subscribed)


def list_meta_pages(account: Account) -> list[Page]:
    """The pages the token manages (their tokens are not even asked for), merged with our rows."""
    client = client_for_account(account, interactive=True)
    with closing(client), graph_errors(account):
        live = client.get_all("me/accounts", {"fields": "id,name", "limit": PAGE_SIZE})
    return _merged_pages(account, live)


def _merged_pages(account: Account, live: list[dict[str, Any]]) -> list[Page]:
    stored = {row.meta_page_id: row for row in MetaPage.objects.for_account(account).order_by("pk")}
    pages = []
    for item in live:
        page_id = str(item.get("id") or "")
        if not page_id:
            continue
        row = stored.pop(page_id, None)
        pages.append(Page(row.pk if row else None, page_id, str(item.get("name") or "")[:200], bool(row and row.is_subscribed)))
    return pages + [page_view(row) for row in stored.values()]


def _page_client(page_token: str) -> GraphClient:
    return GraphClient(page_token, max_retries=1, max_backoff=settings.META_INTERACTIVE_MAX_WAIT_SECONDS)


def subscribe_page(account: Account, page_id: str, *, actor=None, request=None) -> tuple[MetaPage, list[Page]]:
    """Store the page with its (encrypted) page token and subscribe its ``leadgen`` webhooks. Returns the
    row and the list as GET shows it now (tokens left out)."""
    _refuse_if_taken(MetaPage.objects.filter(meta_page_id=page_id), account,
                     "This page is already connected to another account.")
    client = client_for_account(account, interactive=True)
    with closing(client), graph_errors(account):
        live = client.get_all("me/accounts", {"fields": "id,name,access_token", "limit": PAGE_SIZE})
    item = next((p for p in live if str(p.get("id") or "") == page_id), None)
    if item is None or not item.get("access_token"):
        raise InvalidInput({"page_id": ["Meta does not show this page (with a page token) to the connected user."]})
    page_client = _page_client(str(item["access_token"]))
    with closing(page_client):
        try:
            page_client.post(f"{page_id}/subscribed_apps", {"subscribed_fields": "leadgen"})
        except GraphError as error:
            raise upstream_error(account, error) from None
    with transaction.atomic():
        try:
            with transaction.atomic():
                page = MetaPage.objects.select_for_update().filter(account=account, meta_page_id=page_id).first() \
                    or MetaPage(account=account, meta_page_id=page_id)
                page.name = str(item.get("name") or "")[:200]
                page.set_page_token(str(item["access_token"]))
                page.subscribed_at = timezone.now()
                page.save()
        except IntegrityError:
            raise Conflict("This page is already connected to another account.") from None
        record_event("meta.page.subscribe", account=account, actor=actor, target=page, request=request,
                     meta_page_id=page_id, subscribed_fields=["leadgen"])
    return page, _merged_pages(account, [{"id": p.get("id"), "name": p.get("name")} for p in live])
