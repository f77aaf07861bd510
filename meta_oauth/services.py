"""Meta connection services: the one way other apps get a Graph client for an account, and the
writes of the connection itself (connect, disconnect, what a Graph error means for it)."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterator

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from crm_marketing.audit import record_event
from crm_marketing.crypto import TokenDecryptionError
from crm_marketing.errors import DomainError, NotConnected, UpstreamFailed
from crm_marketing.graph import GraphClient, GraphError
from crm_marketing.tenancy import Account
from meta_oauth.models import MetaConnection, MetaPage, WhatsAppChannel

log = logging.getLogger(__name__)


class ReconnectRequired(NotConnected):
    """Meta rejected the stored token (code 190) or we cannot read it: a manager must reconnect.
    A NotConnected, so callers that handle "no usable connection" handle this too."""

    status_code = 503
    code = "meta_reconnect_required"


class MetaUnavailable(UpstreamFailed):
    """Meta kept failing (5xx, throttling, network) after the client's retries: 502, maybe Retry-After."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = int(retry_after) if retry_after else None


def connection_for(account: Account) -> MetaConnection | None:
    return MetaConnection.objects.filter(account=account).first()


def account_for_phone_number_id(phone_number_id: str | None) -> Account | None:
    """The account whose stored WhatsApp channel has this phone number id (unique), or None: how a
    WhatsApp webhook finds its tenant (never by trying tokens)."""
    if not phone_number_id:
        return None
    channel = WhatsAppChannel.objects.select_related("account").filter(meta_phone_number_id=str(phone_number_id)).first()
    return channel.account if channel else None


def account_for_page_id(page_id: str | None) -> Account | None:
    """The account whose stored Facebook page this is (unique), or None: how a leadgen webhook finds its tenant."""
    if not page_id:
        return None
    page = MetaPage.objects.select_related("account").filter(meta_page_id=str(page_id)).first()
    return page.account if page else None


def connection_flags(connection: MetaConnection | None) -> tuple[bool, bool]:
    """(connected, needs_reconnect): usable and unexpired, or present but not usable any more."""
    if connection is None or connection.status == MetaConnection.Status.DISCONNECTED:
        return False, False
    expires_at = connection.token_expires_at
    connected = connection.is_usable and not (expires_at is not None and expires_at <= timezone.now())
    return connected, not connected


def client_for_account(account: Account, *, interactive: bool = False) -> GraphClient:
    """A Graph client with the account's token; NotConnected (503) when there is none usable.

    ``interactive``: for calls made while a person waits on an HTTP request: one retry and short
    waits (META_INTERACTIVE_MAX_WAIT_SECONDS), so a throttled Meta answers 502 + Retry-After at once
    instead of holding the request for minutes; tasks keep the patient defaults."""
    connection = connection_for(account)
    if connection is None or not connection.is_usable:
        raise NotConnected("Meta is not connected for this account (or needs to be reconnected).")
    try:
        token = connection.get_token()
    except TokenDecryptionError:
        log.error("Meta token of account %s cannot be decrypted with META_TOKEN_KEYS", account.pk)
        raise ReconnectRequired("The stored Meta token cannot be read (check META_TOKEN_KEYS) - reconnect Meta.") from None
    if interactive:
        return GraphClient(token, max_retries=1, max_backoff=settings.META_INTERACTIVE_MAX_WAIT_SECONDS)
    return GraphClient(token)


def note_graph_error(account: Account, error: GraphError) -> None:
    """Record what a failed Graph call says about the connection: 190 means reconnect."""
    if error.is_token_invalid:
        with transaction.atomic():
            MetaConnection.objects.filter(account=account).exclude(status=MetaConnection.Status.DISCONNECTED).update(
                status=MetaConnection.Status.NEEDS_RECONNECT, last_error=f"Meta error {error.code}: token rejected"[:255]
            )


def upstream_error(account: Account, error: GraphError) -> DomainError:
    """The API error for a failed Graph call (after noting it): 503 reconnect on 190, else 502."""
    note_graph_error(account, error)
    if error.is_token_invalid:
        return ReconnectRequired("Meta rejected the stored token: a manager must reconnect Meta.")
    if error.is_rate_limited:
        return MetaUnavailable("Meta is throttling this account; try again later.", retry_after=error.retry_after)
    return MetaUnavailable("Meta did not answer correctly; try again later.", retry_after=error.retry_after)


@contextmanager
def graph_errors(account: Account) -> Iterator[None]:
    """Turn a GraphError raised inside into the API error for it (never a 500)."""
    try:
        yield
    except GraphError as error:
        raise upstream_error(account, error) from None


@dataclass(frozen=True)
class TokenDetails:
    """What debug_token says about a user token."""

    expires_at: datetime | None
    data_access_expires_at: datetime | None
    scopes: list[str] = field(default_factory=list)
    meta_user_id: str = ""


def save_connection(account: Account, *, token: str, details: TokenDetails, meta_user_id: str, meta_user_name: str,
                    actor, request=None) -> MetaConnection:
    """Store (or replace) the account's connection with a fresh long-lived token, and audit it."""
    with transaction.atomic():
        connection = MetaConnection.objects.select_for_update().filter(account=account).first()
        if connection is None:
            connection = MetaConnection(account=account)
        connection.set_token(token)
        connection.status = MetaConnection.Status.CONNECTED
        connection.token_expires_at = details.expires_at
        connection.data_access_expires_at = details.data_access_expires_at
        connection.scopes = details.scopes
        connection.meta_user_id = meta_user_id
        connection.meta_user_name = meta_user_name
        connection.connected_by = actor
        connection.connected_at = timezone.now()
        connection.last_error = ""
        connection.save()
        record_event("meta.connect", account=account, actor=actor, target=connection, request=request,
                     meta_user_id=meta_user_id, scopes=details.scopes)
    return connection


def disconnect(account: Account, *, actor, request=None) -> MetaConnection | None:
    """Forget the token and the page tokens it gave (status disconnected); ad accounts, campaigns,
    insights and the chosen channel and pages (which route webhooks) stay."""
    with transaction.atomic():
        MetaPage.objects.filter(account=account).exclude(page_token_ciphertext="").update(page_token_ciphertext="")
        connection = MetaConnection.objects.select_for_update().filter(account=account).first()
        if connection is not None:
            connection.token_ciphertext = ""
            connection.status = MetaConnection.Status.DISCONNECTED
            connection.token_expires_at = None
            connection.data_access_expires_at = None
            connection.scopes = []
            connection.last_error = ""
            connection.save()
        record_event("meta.disconnect", account=account, actor=actor, target=connection, request=request)
    return connection
