"""Plain ``make_*`` factories and Meta helpers for the whole suite (fixtures stay in conftest.py).

``tests.conftest`` and ``tests.fixtures.webhooks`` re-export these, so older imports keep working;
new tests import from here.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal

from django.utils import timezone
from rest_framework.test import APIClient

from crm_marketing.models import Account, Lead, Membership, Opportunity, Sale
from crm_marketing.sandbox.webhooks import PAGE_ID, PHONE_NUMBER_ID, WABA_ID
from crm_marketing.sandbox.insights import ad_day_rows
from marketing.models import AdAccount, Campaign, DailyInsight, SyncRun
from meta_oauth.models import MetaConnection, MetaPage, WhatsAppChannel

# -- the CRM -----------------------------------------------------------------------------------


def make_account(slug: str, *, currency: str = "USD", tz: str = "America/Argentina/Buenos_Aires") -> Account:
    return Account.objects.create(name=slug.title(), slug=slug, currency=currency, timezone=tz)


def make_user(username: str, account: Account | None = None, role: str = "ceo", **extra):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=username, password="pw-" + username, email=f"{username}@example.com", **extra)
    if account is not None:
        Membership.objects.create(user=user, account=account, role=role)
    return user


_phone_counter = iter(range(10_000_000, 99_999_999))


def make_lead(account: Account, **fields) -> Lead:
    fields.setdefault("first_name", "Lead")
    fields.setdefault("phone", f"+54911{next(_phone_counter)}")
    return Lead.objects.create(account=account, **fields)


def make_opportunity(lead: Lead, **fields) -> Opportunity:
    fields.setdefault("currency", lead.account.currency)
    if fields.get("stage") in Opportunity.CLOSED_STAGES:
        fields.setdefault("closed_at", timezone.now())
    return Opportunity.objects.create(account=lead.account, lead=lead, **fields)


def make_sale(lead: Lead, amount: str | Decimal, **fields) -> Sale:
    fields.setdefault("currency", lead.account.currency)
    return Sale.objects.create(account=lead.account, lead=lead, amount=Decimal(str(amount)), **fields)


def api_client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


# -- Meta ----------------------------------------------------------------------------------------


def connect_meta(account: Account, sandbox=None, *, meta_user_id: str = "10001", ad_account: str | None = "act_300001",
                 phone_number_id: str | None = PHONE_NUMBER_ID, page_id: str | None = PAGE_ID, whatsapp: bool = True,
                 scopes: Sequence[str] = ("ads_read", "leads_retrieval"), expires_in_days: int | None = None) -> MetaConnection:
    """A connected account: a token the sandbox issued to ``meta_user_id`` (a dummy token without a
    sandbox, for tests that never call Meta), its WhatsApp channel (WABA 1200001) and subscribed page
    that route webhooks to it, and its ad account. ``None`` leaves one out; ``whatsapp=False`` leaves
    out both Meta assets."""
    connection = MetaConnection(account=account, status=MetaConnection.Status.CONNECTED, meta_user_id=meta_user_id,
                                meta_user_name="Ana Gerente", connected_at=timezone.now(), scopes=list(scopes))
    if expires_in_days is not None:
        connection.token_expires_at = timezone.now() + timedelta(days=expires_in_days, minutes=5)
    connection.set_token(sandbox.issue_token(meta_user_id) if sandbox is not None else "test-token")
    connection.save()
    now = timezone.now()
    if whatsapp and phone_number_id:
        WhatsAppChannel.objects.create(account=account, meta_waba_id=WABA_ID, meta_phone_number_id=phone_number_id,
                                       display_phone_number="+54 9 11 4000-0000", verified_name="Acme Ventas",
                                       subscribed_at=now)
    if whatsapp and page_id:
        page = MetaPage(account=account, meta_page_id=page_id, name="Acme Ventas", subscribed_at=now)
        page.set_page_token(f"EAAsandboxPageToken{page_id}")
        page.save()
    if ad_account:
        AdAccount.objects.create(account=account, meta_ad_account_id=ad_account, name="Acme - Leads AR", currency="ARS",
                                 timezone_name="America/Argentina/Buenos_Aires")
    return connection


def make_ad_account(account: Account, meta_id: str, currency: str, *, selected: bool, last_synced_at=None) -> AdAccount:
    return AdAccount.objects.create(account=account, meta_ad_account_id=meta_id, name=meta_id, currency=currency,
                                    is_selected=selected, last_synced_at=last_synced_at)


def make_campaign(ad_account: AdAccount, meta_id: str, name: str, status: str = "ACTIVE", **fields) -> Campaign:
    return Campaign.objects.create(account=ad_account.account, ad_account=ad_account, meta_campaign_id=meta_id, name=name,
                                   status=status, **fields)


def make_insight(campaign: Campaign, ad: str, day: date, spend: str, impressions: int = 0, clicks: int = 0) -> DailyInsight:
    return DailyInsight.objects.create(
        account=campaign.account, ad_account=campaign.ad_account, meta_campaign_id=campaign.meta_campaign_id,
        meta_adset_id=f"{campaign.meta_campaign_id}-set", meta_ad_id=ad, date=day, currency=campaign.ad_account.currency,
        spend=Decimal(spend), impressions=impressions, clicks=clicks, synced_at=timezone.now(),
    )


def metas_figures(sandbox, run: SyncRun, *, ad_account: str = "act_300001") -> dict:
    """What the sandbox's Meta reports for every ad and day a sync run covered: {(ad, day): (spend, impressions)}."""
    account = sandbox.state.ad_accounts[ad_account]
    return {(row["ad_id"], row["date"]): (row["spend"], row["impressions"])
            for row in ad_day_rows(sandbox.state, account, run.since, run.until)}


def stored_figures(ad_account: AdAccount) -> dict:
    """The daily insights stored for the ad account, in the shape of ``metas_figures``."""
    return {(i.meta_ad_id, i.date): (i.spend, i.impressions) for i in DailyInsight.objects.filter(ad_account=ad_account)}
