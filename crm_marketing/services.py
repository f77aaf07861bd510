"""CRM write services: every change to leads, opportunities and sales goes through here."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from crm_marketing import events
from crm_marketing.audit import record_event, record_events
from crm_marketing.errors import Conflict, DomainError
from crm_marketing.models import SALE_ATTRIBUTION, Account, Lead, Membership, Opportunity, Sale, bulk_created

DUPLICATE_PHONE = "A lead with this phone already exists in this account."
# What a seller hears when the phone is on a lead he cannot see: the same words whoever holds it (a
# colleague or nobody yet), nothing about that lead (not its id, name, status or seller).
CONTACT_HANDLED = "This contact is already handled in your account: your manager has been told and can assign it to you."


def create_lead(account: Account, *, actor=None, request=None, **fields: Any) -> Lead:
    try:
        with transaction.atomic():
            lead = Lead.objects.create(account=account, **fields)
            record_event("lead.create", account=account, actor=actor, target=lead, request=request)
            events.publish(events.LEAD_CREATED, account_id=account.pk, lead_id=lead.pk)
    except IntegrityError as exc:
        raise duplicate_phone(account, fields.get("phone"), actor=actor, request=request) from exc
    return lead


def create_leads(account: Account, rows: list[dict[str, Any]]) -> list[Lead]:
    """New leads by the system (Meta's intake at volume) in one transaction, one insert per table: the rows,
    audit entries, ``lead_created`` events and rollup marks (``bulk_created``) that ``create_lead`` writes
    for each. A phone already on a lead of the account refuses them all (Conflict, nothing written)."""
    try:
        with transaction.atomic():
            leads = Lead.objects.bulk_create([Lead(account=account, **fields) for fields in rows])
            bulk_created.send(sender=Lead, instances=leads)
            record_events("lead.create", account=account, targets=leads)
            events.publish_many(events.LEAD_CREATED, account_id=account.pk, payloads=[{"lead_id": lead.pk} for lead in leads])
    except IntegrityError as exc:
        raise Conflict(DUPLICATE_PHONE, code="duplicate_lead") from exc
    return leads


def duplicate_phone(account: Account, phone: str | None, *, actor=None, request=None, lead: Lead | None = None) -> Conflict:
    """The 409 for a phone already on another lead of the account.

    A seller sees only his own leads, so naming the lead (or even saying "already exists" about it)
    would let him probe his colleagues' pipelines phone by phone. He gets CONTACT_HANDLED instead, the
    same whether a colleague holds the lead or nobody does, and his attempt goes to the audit trail
    (``lead.duplicate_refused`` on the existing lead) so a manager can assign the contact. Everyone
    else sees every lead and gets the plain answer."""
    existing = Lead.objects.for_account(account).filter(phone=phone).exclude(pk=getattr(lead, "pk", None)).first() if phone else None
    if existing is not None and actor is not None and existing.seller_id != actor.pk and \
            Membership.objects.filter(user=actor, account=account, role=Membership.Role.SELLER).exists():
        record_event("lead.duplicate_refused", account=account, actor=actor, target=existing, request=request)
        return Conflict(CONTACT_HANDLED, code="contact_already_handled", fields={"phone": [CONTACT_HANDLED]})
    return Conflict(DUPLICATE_PHONE, code="duplicate_lead")


def update_lead(lead: Lead, *, actor=None, request=None, **fields: Any) -> Lead:
    """Update a lead; a status change records who and when and publishes lead_status_changed."""
    old_status = lead.status
    new_status = fields.get("status", old_status)
    try:
        with transaction.atomic():
            for name, value in fields.items():
                setattr(lead, name, value)
            if new_status != old_status:
                lead.status_changed_at = timezone.now()
                lead.status_changed_by = actor
            lead.save()
            record_event("lead.update", account=lead.account, actor=actor, target=lead, request=request, fields=sorted(fields))
            if new_status != old_status:
                events.publish(events.LEAD_STATUS_CHANGED, account_id=lead.account_id, lead_id=lead.pk, old=old_status, new=new_status)
    except IntegrityError as exc:
        raise duplicate_phone(lead.account, fields.get("phone"), actor=actor, request=request, lead=lead) from exc
    return lead


def create_opportunity(account: Account, *, lead: Lead, actor=None, request=None, **fields: Any) -> Opportunity:
    if lead.account_id != account.pk:
        raise DomainError("Unknown lead.", code="validation_error", fields={"lead": ["Unknown lead."]})
    fields.setdefault("currency", account.currency)
    stage = fields.get("stage", Opportunity.Stage.NEW)
    if stage in Opportunity.CLOSED_STAGES:
        raise DomainError("Create the opportunity open, then close it.", code="validation_error", fields={"stage": ["A new opportunity cannot start closed."]})
    with transaction.atomic():
        opportunity = Opportunity.objects.create(account=account, lead=lead, **fields)
        record_event("opportunity.create", account=account, actor=actor, target=opportunity, request=request)
        events.publish(events.OPPORTUNITY_CREATED, account_id=account.pk, opportunity_id=opportunity.pk, lead_id=lead.pk)
    return opportunity


def update_opportunity(opportunity: Opportunity, *, actor=None, request=None, amount: Decimal | None = None, **fields: Any) -> Opportunity:
    """Change fields or the stage; closing as won creates the Sale in the same transaction.

    A closed opportunity (won or lost) cannot change stage again: 409.
    """
    with transaction.atomic():
        opportunity = Opportunity.objects.select_for_update().get(pk=opportunity.pk)
        old_stage = opportunity.stage
        new_stage = fields.pop("stage", old_stage)
        if new_stage != old_stage and opportunity.is_closed:
            raise Conflict(f"The opportunity is already {old_stage}; its stage cannot change.", code="opportunity_closed")
        if opportunity.is_closed and (fields or amount is not None):
            raise Conflict(f"The opportunity is already {old_stage}.", code="opportunity_closed")
        for name, value in fields.items():
            setattr(opportunity, name, value)
        if amount is not None:
            opportunity.amount = amount
        if new_stage != old_stage:
            now = timezone.now()
            opportunity.stage = new_stage
            opportunity.stage_changed_at = now
            opportunity.stage_changed_by = actor
            if new_stage in Opportunity.CLOSED_STAGES:
                opportunity.closed_at = now
        if new_stage == Opportunity.Stage.WON and old_stage != new_stage and opportunity.amount <= 0:
            raise DomainError("A won opportunity needs its amount.", code="validation_error", fields={"amount": ["Required and above 0 to close as won."]})
        opportunity.save()
        record_event("opportunity.update", account=opportunity.account, actor=actor, target=opportunity, request=request, old_stage=old_stage, stage=new_stage)
        if new_stage != old_stage:
            events.publish(events.OPPORTUNITY_STAGE_CHANGED, account_id=opportunity.account_id, opportunity_id=opportunity.pk, old=old_stage, new=new_stage)
        if new_stage == Opportunity.Stage.WON and old_stage != new_stage:
            sale = Sale.objects.create(
                account_id=opportunity.account_id, opportunity=opportunity, lead_id=opportunity.lead_id,
                amount=opportunity.amount, currency=opportunity.currency, closed_at=opportunity.closed_at,
            )
            events.publish(events.OPPORTUNITY_WON, account_id=opportunity.account_id, opportunity_id=opportunity.pk, sale_id=sale.pk, lead_id=opportunity.lead_id)
    return opportunity


def create_sale(account: Account, *, lead: Lead, actor=None, request=None, **fields: Any) -> Sale:
    """Record a sale directly (one not closed through an opportunity, e.g. imported)."""
    if lead.account_id != account.pk:
        raise DomainError("Unknown lead.", code="validation_error", fields={"lead": ["Unknown lead."]})
    fields.setdefault("currency", account.currency)
    opportunity = fields.get("opportunity")
    if opportunity is not None and opportunity.lead_id != lead.pk:
        raise DomainError("The opportunity belongs to another lead.", code="validation_error", fields={"opportunity": ["Belongs to another lead."]})
    try:
        with transaction.atomic():
            sale = Sale.objects.create(account=account, lead=lead, **fields)
            record_event("sale.create", account=account, actor=actor, target=sale, request=request)
    except IntegrityError as exc:
        raise Conflict("This opportunity already has a sale.", code="duplicate_sale") from exc
    return sale


def update_sale(sale: Sale, *, actor=None, request=None, **fields: Any) -> Sale:
    with transaction.atomic():
        for name, value in fields.items():
            setattr(sale, name, value)
        sale.save()
        record_event("sale.update", account=sale.account, actor=actor, target=sale, request=request, fields=sorted(fields))
    return sale


def sales_with_drifted_attribution(account: Account):
    """The account's sales whose attribution copy differs from their lead's (the lead was changed by
    queryset.update() or SQL, which Lead.save never saw)."""
    lead = Lead.objects.filter(pk=OuterRef("lead_id"))
    drifted = Q()
    for name in SALE_ATTRIBUTION:
        drifted |= ~Q(**{name: Subquery(lead.values(name)[:1])})
    return Sale.objects.filter(account=account).filter(drifted)


def repair_sale_attribution(account: Account) -> int:
    """Re-copy the lead's attribution onto the account's sales whose copy drifted; returns how many
    sales changed."""
    lead = Lead.objects.filter(pk=OuterRef("lead_id"))
    return sales_with_drifted_attribution(account).update(**{name: Subquery(lead.values(name)[:1]) for name in SALE_ATTRIBUTION})
