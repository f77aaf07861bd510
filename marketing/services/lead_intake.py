"""Many Meta touches at once (a drain's leadgen batch): the new leads among them are created together.

Recording touches one by one costs a transaction and about a dozen statements per lead, and most
Lead Ads leads are people the account has never seen. Those (no stored touch with their Meta id, no
lead with their phone or email, the first of the batch to carry each) are created in one transaction
with one insert per table; every other touch is left to ``attribution.record_touch``, which the
caller runs after them, in order, so a repeated phone or email in the batch finds the lead made here.
The rows are the same as one by one (lead, touch, audit entry, ``lead_created`` event, rollup marks).
"""
from __future__ import annotations

import logging
from functools import reduce
from operator import or_
from typing import TypeVar

from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.db.models.functions import Upper

from crm_marketing import services
from crm_marketing.errors import Conflict
from crm_marketing.models import Account, Lead, LeadTouch
from marketing.services.attribution import Touch, TouchResult, new_lead_fields, new_touch_row

log = logging.getLogger(__name__)
Key = TypeVar("Key")


def record_new_touches(account: Account, touches: dict[Key, Touch]) -> dict[Key, TouchResult]:
    """Record the touches that make new leads, together; returns their results by the caller's key. The
    others, and all of them when a concurrent writer stored one of their phones first, are not recorded."""
    firsts = _firsts(touches)
    if len(firsts) < 2:  # one touch: record_touch's path is as cheap
        return {}
    try:
        with transaction.atomic():
            known = _known(account, firsts)
            fresh = {key: touch for key, touch in firsts.items() if key not in known}
            if not fresh:
                return {}
            attributions = [touch.attribution() for touch in fresh.values()]
            leads = services.create_leads(account, [new_lead_fields(touch, attribution)
                                                    for touch, attribution in zip(fresh.values(), attributions)])
            LeadTouch.objects.bulk_create([new_touch_row(account, lead, touch, attribution)
                                           for lead, touch, attribution in zip(leads, fresh.values(), attributions)])
    except (Conflict, DatabaseError) as exc:  # e.g. a concurrent writer stored a phone or a touch first
        log.info("%s new leads for %s recorded one by one: %s", len(firsts), account.slug, exc)
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
        return {}
    except Exception:  # noqa: BLE001 - one lead the batch cannot take (rolled back): one by one, it fails alone
        log.exception("%s new leads for %s recorded one by one", len(firsts), account.slug)
        return {}
    return {key: TouchResult(lead, True, True, True) for key, lead in zip(fresh, leads)}


def _firsts(touches: dict[Key, Touch]) -> dict[Key, Touch]:
    """The touches whose Meta id, phone and email no earlier touch of the batch carries. Emails compare as
    upper case; after a non-ASCII email (which the database's UPPER() may fold onto an ASCII one) no touch
    with an email is a first."""
    seen: set[tuple[str, str]] = set()
    firsts: dict[Key, Touch] = {}
    folding = False
    for key, touch in touches.items():
        folding = folding or not touch.email.isascii()
        marks = {("touch", f"{touch.lead_source}:{touch.external_id}"), ("phone", touch.phone or ""), ("email", touch.email.upper())}
        marks -= {("phone", ""), ("email", "")}
        if touch.external_id and not marks & seen and not (folding and touch.email):
            firsts[key] = touch
        seen |= marks
    return firsts


def _known(account: Account, touches: dict[Key, Touch]) -> set[Key]:
    """The touches whose Meta id is stored or whose phone or email is on a lead of the account (three queries).

    Emails match as record_touch matches them, UPPER(email) = UPPER(%s) on the account's index (the firsts'
    emails are ASCII, whose upper case Python and the database agree on)."""
    by_source: dict[str, list[str]] = {}
    for touch in touches.values():
        by_source.setdefault(touch.lead_source, []).append(touch.external_id)
    stored = set(LeadTouch.objects.for_account(account).filter(
        reduce(or_, [Q(lead_source=source, external_id__in=ids) for source, ids in by_source.items()]))
        .values_list("lead_source", "external_id"))
    leads = Lead.objects.for_account(account)
    phones = [t.phone for t in touches.values() if t.phone]
    on_leads = set(leads.filter(phone__in=phones).values_list("phone", flat=True)) if phones else set()
    emails = {t.email.upper() for t in touches.values() if t.email}  # ASCII: firsts have no other
    matched = set(leads.annotate(email_upper=Upper("email")).filter(email_upper__in=emails).values_list(
        "email_upper", flat=True)) if emails else set()
    return {key for key, t in touches.items() if (t.lead_source, t.external_id) in stored
            or (t.phone and t.phone in on_leads) or (t.email and t.email.upper() in matched)}
