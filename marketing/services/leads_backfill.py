"""Recording the Lead Ads leads whose webhook Meta never delivered, per account, by hand or nightly."""
from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

from django.utils import timezone

from crm_marketing.audit import record_event
from crm_marketing.errors import NotConnected
from crm_marketing.graph import GraphError
from crm_marketing.models import Account
from marketing.services.attribution import BackfillResult, backfill_form_leads
from meta_oauth.models import MetaConnection
from meta_oauth.services import client_for_account, note_graph_error

log = logging.getLogger(__name__)

DEFAULT_DAYS = 7  # Meta keeps leads for 90 days and retries a leadgen webhook for up to 36 h


def default_since(account: Account) -> dt.date:
    return timezone.now().astimezone(ZoneInfo(account.timezone)).date() - dt.timedelta(days=DEFAULT_DAYS)


def backfill_account_leads(account: Account, *, since: dt.date | None = None, form_ids: list[str] | None = None) -> tuple[dt.date, BackfillResult]:
    """Fetch the leads created since ``since`` (account timezone; default a week ago) of the account's
    seen forms (or ``form_ids``). Raises NotConnected, or GraphError after noting it on the connection."""
    day = since or default_since(account)
    start = dt.datetime.combine(day, dt.time.min, ZoneInfo(account.timezone))
    client = client_for_account(account)
    try:
        result = backfill_form_leads(account, client=client, since=start, form_ids=form_ids)
    except GraphError as error:
        note_graph_error(account, error)
        raise
    record_event("leads.backfill", account=account, since=day.isoformat(), forms=result.forms, fetched=result.fetched,
                 leads_created=result.leads_created)
    return day, result


def backfill_connected_accounts() -> dict[str, str]:
    """The nightly pass: every connected account, one failure never stopping the others."""
    outcome: dict[str, str] = {}
    accounts = Account.objects.filter(pk__in=MetaConnection.objects.filter(status=MetaConnection.Status.CONNECTED).values("account"))
    for account in accounts.order_by("pk"):
        try:
            _day, result = backfill_account_leads(account)
            outcome[account.slug] = f"{result.leads_created} new lead(s) from {result.forms} form(s)"
        except (NotConnected, GraphError) as error:
            log.warning("leads backfill of account %s failed: %s", account.pk, error)
            outcome[account.slug] = f"failed: {error}"
    return outcome
