"""Marketing's Meta webhook handlers (registered in MarketingConfig.ready()).

Each change finds its account by the Meta asset it names (``MetaPage`` for ``leadgen``,
``WhatsAppChannel`` for ``messages``); an unknown id is ignored with a log line, never guessed.
``leadgen``: fetch the lead with the owning account's token and record the Lead Ads touch.
``messages``: inbound WhatsApp messages; one with an ad ``referral`` is a Click-to-WhatsApp touch,
any other updates the known lead's ``last_inbound_at``. Statuses are not ours (automation's).
"""
from __future__ import annotations

import datetime as dt
import logging

from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from crm_marketing.errors import NotConnected
from crm_marketing.graph import GraphError, is_meta_id
from crm_marketing.meta_time import parse_meta_time
from crm_marketing.models import Account, Lead
from crm_marketing.webhook_models import WebhookEvent
from crm_marketing.webhooks import EventFailed, HandlerResult, IgnoreEvent, RetryLater
from marketing.services import attribution, lead_intake
from marketing.services.attribution import AdPath, Touch, TouchResult
from meta_oauth.services import account_for_page_id, account_for_phone_number_id, client_for_account, note_graph_error

log = logging.getLogger(__name__)
LEADS_PER_GRAPH_BATCH = 50  # Graph takes at most 50 calls in one batch request


def _retry_or_fail(account: Account, error: GraphError, what: str) -> Exception:
    """The exception that tells the webhook core what to do after a Graph failure."""
    if error.is_token_invalid:
        note_graph_error(account, error)
        return EventFailed(f"{what}: Meta rejected the token of {account.slug} (code {error.code}); reconnect, then re-run")
    if error.is_rate_limited or error.is_transient:
        return RetryLater(f"{what}: {error}", retry_after=error.retry_after)
    return EventFailed(f"{what}: {error}")


def handle_leadgen(event: WebhookEvent) -> str:
    """The page id names the account (a stored, subscribed MetaPage); its token fetches the lead."""
    result = handle_leadgen_many([event])[0]
    if isinstance(result, Exception):
        raise result
    return result


def handle_leadgen_many(events: list[WebhookEvent]) -> list[HandlerResult]:
    """The batch form (the webhook drain's): each account's token is read once and its leads are fetched
    LEADS_PER_GRAPH_BATCH at a time in one Graph batch request, and the new leads among them are created
    together; a lead that fails fails alone."""
    results: list[HandlerResult] = [None] * len(events)
    accounts: dict[str, Account | None] = {}
    todo: dict[Account, list[tuple[int, str]]] = {}
    for n, event in enumerate(events):
        try:
            leadgen_id, account = _leadgen_target(event, accounts)
        except IgnoreEvent as ignored:
            results[n] = ignored
            continue
        todo.setdefault(account, []).append((n, leadgen_id))
    for account, items in todo.items():
        try:
            client = client_for_account(account)
        except NotConnected:
            for n, leadgen_id in items:
                results[n] = EventFailed(f"leadgen {leadgen_id}: Meta is not connected for {account.slug}; reconnect, then re-run")
            continue
        for start in range(0, len(items), LEADS_PER_GRAPH_BATCH):
            chunk = items[start:start + LEADS_PER_GRAPH_BATCH]
            try:
                answers = attribution.fetch_leads(client, [leadgen_id for _, leadgen_id in chunk])
            except GraphError as error:
                answers = [error] * len(chunk)
            for n, result in _record_leads(account, events, chunk, answers).items():
                results[n] = result
    return results


def _record_leads(account: Account, events: list[WebhookEvent], chunk: list[tuple[int, str]],
                  answers: list[dict | GraphError]) -> dict[int, HandlerResult]:
    """The fetched leads of one batch request: the new ones created together (lead_intake), then the
    others one by one, in order; a lead Meta could not give or that cannot be recorded fails alone."""
    results: dict[int, HandlerResult] = {}
    touches: dict[int, Touch] = {}
    for (n, leadgen_id), answer in zip(chunk, answers):
        if isinstance(answer, GraphError):
            results[n] = _retry_or_fail(account, answer, f"fetching lead {leadgen_id}")
            continue
        try:
            touches[n] = attribution.touch_from_lead(answer, form_id=str(events[n].value.get("form_id") or ""))
        except Exception as exc:  # noqa: BLE001 - this lead's event fails alone (the drain records and retries it)
            results[n] = exc
    created = lead_intake.record_new_touches(account, touches)
    for n, leadgen_id in chunk:
        if n in created:
            results[n] = _described(created[n], leadgen_id)
        elif n in touches:
            results[n] = _record_lead(account, touches[n], leadgen_id)
    return results


def _leadgen_target(event: WebhookEvent, accounts: dict[str, Account | None]) -> tuple[str, Account]:
    value = event.value
    leadgen_id = str(value.get("leadgen_id") or "")
    if not is_meta_id(leadgen_id):  # it becomes the Graph path of the lead: digits only
        raise IgnoreEvent("leadgen change without a leadgen_id" if not leadgen_id else "leadgen change whose leadgen_id is not a Meta id")
    page_id = str(value.get("page_id") or event.entry_id or "")
    if page_id not in accounts:
        accounts[page_id] = account_for_page_id(page_id)
    account = accounts[page_id]
    if account is None:
        raise IgnoreEvent(f"no account has the Facebook page {page_id or '(none)'} (leadgen {leadgen_id})")
    event.account = account
    return leadgen_id, account


def _record_lead(account: Account, touch: Touch, leadgen_id: str) -> HandlerResult:
    try:
        result = attribution.record_touch(account, touch)
    except (OperationalError, InterfaceError) as exc:  # the connection was lost: this lead is retried, the next ones go on
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()  # the next lead opens a new one
        return exc
    except Exception as exc:  # noqa: BLE001 - this lead's event fails alone (the drain records and retries it)
        return exc
    return _described(result, leadgen_id)


def _described(result: TouchResult, leadgen_id: str) -> str:
    return f"lead {result.lead.pk} {'created' if result.lead_created else 'updated'} from leadgen {leadgen_id}"


def handle_messages(event: WebhookEvent) -> str | None:
    value = event.value
    messages = [m for m in value.get("messages") or [] if isinstance(m, dict) and m.get("from")]
    if not messages:
        return None  # a statuses change: automation's business
    phone_number_id = (value.get("metadata") or {}).get("phone_number_id")
    account = account_for_phone_number_id(phone_number_id)
    if account is None:
        raise IgnoreEvent(f"no account has the WhatsApp phone number id {phone_number_id}")
    event.account = account
    names = {str(c.get("wa_id")): (c.get("profile") or {}).get("name") or ""
             for c in value.get("contacts") or [] if isinstance(c, dict)}
    done, skipped, deferred = [], [], None
    for message in messages:
        referral = message.get("referral") or {}
        if referral.get("source_type") == "ad" and is_meta_id(str(referral.get("source_id") or "")):
            outcome, error = _click_to_whatsapp(account, message, referral, names.get(str(message["from"]), ""))
            done.append(outcome)
            deferred = deferred or error
        else:
            outcome = _inbound(account, message)
            (done if outcome.startswith("lead") else skipped).append(outcome)
    if deferred is not None:
        raise deferred
    if not done:
        raise IgnoreEvent("; ".join(skipped))
    return "; ".join(done + skipped)


def _message_time(message: dict) -> dt.datetime:
    return parse_meta_time(message.get("timestamp")) or timezone.now()


def _click_to_whatsapp(account: Account, message: dict, referral: dict, name: str) -> tuple[str, Exception | None]:
    """Record the CTWA touch with what we know; an ad we cannot resolve now still gives the lead its
    ad id, and a retry (the returned exception) fills in the ad set and campaign."""
    ad_id = str(referral["source_id"])
    error: Exception | None = None
    try:
        path = attribution.resolve_ad(account, ad_id)
    except NotConnected:
        path = AdPath(ad_id)
        log.info("ad %s of a CTWA message left unresolved: %s is not connected", ad_id, account.slug)
    except GraphError as graph_error:
        path = AdPath(ad_id)
        if graph_error.is_token_invalid or graph_error.is_rate_limited or graph_error.is_transient:
            error = _retry_or_fail(account, graph_error, f"looking up ad {ad_id}")
        else:
            log.warning("ad %s of a CTWA message cannot be looked up: %s", ad_id, graph_error)
    wa_id, at = str(message["from"]), _message_time(message)
    phone = attribution.normalize_phone(wa_id, international=True)
    first, last = attribution.split_name(name) if name else (phone or wa_id, "")
    touch = Touch(
        lead_source=Lead.Source.META_CTWA, external_id=str(message.get("id") or ""), touched_at=at,
        phone=phone, first_name=first[:120], last_name=last[:120],
        meta_campaign_id=path.campaign_id, meta_adset_id=path.adset_id, meta_ad_id=ad_id,
        meta_ad_headline=str(referral.get("headline") or ""), meta_ad_body=str(referral.get("body") or ""),
        ctwa_clid=str(referral.get("ctwa_clid") or ""),
        external_ids={"whatsapp_wa_id": wa_id, "meta_ctwa_message_id": str(message.get("id") or ""),
                      "meta_ctwa_source_url": str(referral.get("source_url") or "")},
        details={"referral": referral, "profile_name": name},
    )
    result = attribution.record_touch(account, touch)
    attribution.note_inbound(result.lead, at)
    if result.touch_created and not result.lead_created:
        attribution.publish_replied(result.lead, message_id=touch.external_id, at=at)
    return f"lead {result.lead.pk} {'created' if result.lead_created else 'updated'} from CTWA ad {ad_id}", error


def _inbound(account: Account, message: dict) -> str:
    wa_id, at = str(message["from"]), _message_time(message)
    phone = attribution.normalize_phone(wa_id, international=True)
    lead = Lead.objects.for_account(account).filter(phone=phone).first() if phone else None
    if lead is None:
        return f"message from unknown number {wa_id} without an ad referral"
    if attribution.note_inbound(lead, at):
        attribution.publish_replied(lead, message_id=str(message.get("id") or ""), at=at)
    return f"lead {lead.pk} replied"
