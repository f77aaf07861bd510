"""Which Meta portfolios and ad accounts the connection can see, the token's status, and
choosing the ad account the hub reports on. Every read here goes live to Meta."""
from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from crm_marketing.audit import record_event
from crm_marketing.errors import Conflict, DomainError, InvalidInput
from crm_marketing.graph import GraphClient, GraphError
from crm_marketing.tenancy import Account
from marketing.models import AdAccount
from meta_oauth.models import MetaConnection
from meta_oauth.services import (
    client_for_account,
    connection_flags,
    connection_for,
    graph_errors,
    note_graph_error,
    upstream_error,
)

PAGE_SIZE = 100
AD_ACCOUNT_FIELDS = "id,account_id,name,currency,timezone_name,account_status"
# shared/meta/businesses_and_ad_accounts.json "account_status_values", plus Meta's documented 8.
ACCOUNT_STATUS = {"1": "ACTIVE", "2": "DISABLED", "3": "UNSETTLED", "7": "PENDING_RISK_REVIEW",
                  "8": "PENDING_SETTLEMENT", "9": "IN_GRACE_PERIOD", "100": "PENDING_CLOSURE", "101": "CLOSED"}


@dataclass(frozen=True)
class TokenStatus:
    connected: bool
    needs_reconnect: bool
    expires_at: datetime | None
    days_left: int | None
    scopes: list[str] = field(default_factory=list)
    business_managers: int | None = None
    ad_accounts: int | None = None
    ad_account: dict[str, str] | None = None
    connect_url: str | None = None


@dataclass(frozen=True)
class Portfolio:
    id: str
    name: str
    ad_accounts_count: int


@dataclass(frozen=True)
class MetaAdAccount:
    id: str
    name: str
    currency: str
    timezone: str
    status: str


def _count(client: GraphClient, path: str) -> int:
    return len(client.get_all(path, {"fields": "id", "limit": PAGE_SIZE}))


def _live_counts(account: Account, client: GraphClient) -> tuple[int | None, int | None]:
    """(business managers, ad accounts) the token sees; None for what Meta would not tell us."""
    counts: dict[str, int | None] = {"me/businesses": None, "me/adaccounts": None}
    with closing(client):
        for path in counts:
            try:
                counts[path] = _count(client, path)
            except GraphError as error:
                note_graph_error(account, error)
                if error.is_token_invalid:
                    break
    return counts["me/businesses"], counts["me/adaccounts"]


def token_status(account: Account) -> TokenStatus:
    """The connection as the hub shows it; answers even when Meta is down (counts are then None)."""
    selected = AdAccount.objects.filter(account=account, is_selected=True).first()
    ad_account = {"id": selected.meta_ad_account_id, "name": selected.name, "currency": selected.currency} if selected else None
    connect_url = reverse("meta_oauth:url")
    connection = connection_for(account)
    connected, needs_reconnect = connection_flags(connection)
    if connection is None or not (connected or needs_reconnect):
        return TokenStatus(False, False, None, None, ad_account=ad_account, connect_url=connect_url)
    businesses = ad_accounts = None
    if connected:
        try:
            client = client_for_account(account, interactive=True)
        except DomainError:  # the stored token cannot be read with META_TOKEN_KEYS
            connected, needs_reconnect = False, True
        else:
            businesses, ad_accounts = _live_counts(account, client)
            connection.refresh_from_db(fields=["status"])  # a 190 just now flips it
            connected, needs_reconnect = connection_flags(connection)
    expires_at = connection.token_expires_at
    return TokenStatus(
        connected=connected,
        needs_reconnect=needs_reconnect,
        expires_at=expires_at,
        days_left=max(0, (expires_at - timezone.now()).days) if expires_at else None,
        scopes=list(connection.scopes or []),
        business_managers=businesses,
        ad_accounts=ad_accounts,
        ad_account=ad_account,
        connect_url=None if connected else connect_url,
    )


def list_portfolios(account: Account) -> list[Portfolio]:
    """The Business Managers the token sees, each with how many ad accounts it owns."""
    client = client_for_account(account, interactive=True)
    with closing(client), graph_errors(account):
        businesses = client.get_all("me/businesses", {"fields": "id,name", "limit": PAGE_SIZE})
        return [Portfolio(id=str(b["id"]), name=str(b.get("name") or ""),
                          ad_accounts_count=_count(client, f"{b['id']}/owned_ad_accounts")) for b in businesses]


def _ad_account_view(row: dict[str, Any]) -> MetaAdAccount:
    account_id = str(row.get("id") or f"act_{row.get('account_id', '')}")
    return MetaAdAccount(id=account_id, name=str(row.get("name") or ""), currency=str(row.get("currency") or ""),
                         timezone=str(row.get("timezone_name") or ""),
                         status=ACCOUNT_STATUS.get(str(row.get("account_status")), "UNKNOWN"))


def list_ad_accounts(account: Account, *, portfolio_id: str | None = None) -> list[MetaAdAccount]:
    """Every ad account (all pages) of one portfolio, or every one the token sees."""
    client = client_for_account(account, interactive=True)
    path = f"{portfolio_id}/owned_ad_accounts" if portfolio_id else "me/adaccounts"
    with closing(client):
        try:
            rows = client.get_all(path, {"fields": AD_ACCOUNT_FIELDS, "limit": PAGE_SIZE})
        except GraphError as error:
            if portfolio_id and _is_inaccessible(error):
                raise InvalidInput({"portfolio_id": ["Meta does not show this portfolio to the connected user."]}) from None
            raise upstream_error(account, error) from None
    return [_ad_account_view(row) for row in rows]


def _is_inaccessible(error: GraphError) -> bool:
    """Meta's "no such object / no permission" answers, as opposed to outages and bad tokens."""
    if error.is_token_invalid or error.is_rate_limited or error.is_transient or error.code is None:
        return False
    return error.code in (10, 100, 803) or 200 <= error.code < 300


def connect_ad_account(account: Account, *, meta_ad_account_id: str, account_name: str = "", actor=None,
                       request=None) -> AdAccount:
    """Check with Meta that the token sees the ad account, then make it the selected one."""
    client = client_for_account(account, interactive=True)
    with closing(client):
        try:
            data = client.get(meta_ad_account_id, {"fields": AD_ACCOUNT_FIELDS + ",business{id}"})
        except GraphError as error:
            if _is_inaccessible(error):
                raise InvalidInput({"account_id": ["Meta does not show this ad account to the connected user."]}) from None
            raise upstream_error(account, error) from None
    view = _ad_account_view(data)
    if view.id != meta_ad_account_id:
        raise InvalidInput({"account_id": ["Meta answered for another ad account."]})
    business = data.get("business")
    defaults = {
        "name": view.name or account_name,
        "currency": view.currency or account.currency,
        "timezone_name": view.timezone or "UTC",
        "account_status": int(data.get("account_status") or 0),
        "meta_business_id": str(business.get("id", "")) if isinstance(business, dict) else "",
        "is_selected": True,
    }
    with transaction.atomic():
        list(MetaConnection.objects.select_for_update().filter(account=account))  # one connect at a time
        AdAccount.objects.filter(account=account, is_selected=True).exclude(meta_ad_account_id=meta_ad_account_id).update(is_selected=False)
        ad_account, _created = AdAccount.objects.update_or_create(account=account, meta_ad_account_id=meta_ad_account_id,
                                                                  defaults=defaults)
        record_event("meta.ad_account.connect", account=account, actor=actor, target=ad_account, request=request,
                     meta_ad_account_id=meta_ad_account_id, name=ad_account.name)
    _start_first_sync(account, actor=actor, request=request)
    return ad_account


def _start_first_sync(account: Account, *, actor=None, request=None) -> None:
    """A newly chosen ad account starts syncing at once instead of waiting for the schedule."""
    from marketing.services.runs import request_sync

    try:
        request_sync(account, actor=actor, request=request)
    except Conflict:
        pass  # a sync is already queued or running (or Meta parked the ad account): it will catch up
