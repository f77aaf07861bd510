"""Demo data a sales manager would believe: two accounts, a user per role, 180 days of leads.

Leads arrive every day at a steady pace with mild growth (so every window has a full previous
period), spread over the account's sellers. Meta leads carry the campaign of the Meta sandbox's
fixture that was running on their day, so no campaign gets leads before it started or after it
stopped; opportunities open within days of the lead and close within two weeks, and an outcome
that would fall after "now" is still open (sales keep closing over time, not all at seed time).

Deterministic (fixed random seed) and idempotent: accounts and users are upserted, and an
account's CRM rows are generated only when it has none yet.
"""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils import timezone

from crm_marketing import events
from crm_marketing.models import Account, Lead, Membership, Opportunity, Sale
from crm_marketing.sandbox.state import load_default_fixture

DEMO_PASSWORD = "demo-pass-2026"
DEMO_DAYS = 180  # six 30-day windows: the default window and its previous period are both full
GROWTH = 0.2  # the daily lead rate grows by a fifth over the DEMO_DAYS
MAX_DAYS_TO_OPPORTUNITY = 3
MAX_DAYS_TO_CLOSE = 14  # from the lead to a won or lost opportunity (and its sale)
FIRST_NAMES = ["María", "Lucas", "Sofía", "Mateo", "Valentina", "Juan", "Camila", "Martín", "Lucía", "Diego", "Julieta", "Tomás"]
LAST_NAMES = ["Pérez", "Gómez", "Rodríguez", "Fernández", "López", "Díaz", "Martínez", "Romero", "Sosa", "Álvarez"]


@dataclass(frozen=True)
class DemoCampaign:
    """A campaign of the sandbox fixture, with the days (UTC) it ran."""

    meta_campaign_id: str
    meta_adset_id: str
    meta_ad_id: str
    lead_source: str
    start: dt.date
    stop: dt.date  # today for a campaign still running

    def ran_on(self, day: dt.date) -> bool:
        return self.start <= day <= self.stop


def sandbox_campaigns(meta_ad_account_id: str, today: dt.date) -> list[DemoCampaign]:
    """The fixture's campaigns of one ad account, each with its first ad (Click-to-WhatsApp for the
    engagement objective, Lead Ads otherwise), dated as the sandbox dates them."""
    fixture = load_default_fixture()
    campaigns = []
    for campaign in fixture["campaigns"]:
        if campaign["account_id"] != meta_ad_account_id:
            continue
        adset = next(a for a in fixture["adsets"] if a["campaign_id"] == campaign["id"])
        ad = next(a for a in fixture["ads"] if a["adset_id"] == adset["id"])
        stop_ago = campaign.get("stop_days_ago")
        campaigns.append(DemoCampaign(
            campaign["id"], adset["id"], ad["id"],
            "meta_ctwa" if campaign.get("objective") == "OUTCOME_ENGAGEMENT" else "meta_lead_ads",
            today - timedelta(days=campaign.get("start_days_ago") or 0),
            today - timedelta(days=stop_ago) if stop_ago is not None else today,
        ))
    return campaigns


@dataclass(frozen=True)
class DemoAccount:
    slug: str
    name: str
    currency: str
    timezone: str
    users: tuple[tuple[str, str], ...]  # (username, role)
    leads_per_day: float  # at the start of the DEMO_DAYS; grows by GROWTH
    phone_prefix: str
    deal_size: tuple[int, int]  # smallest and largest deal, in whole units of the currency
    meta_ad_account_id: str  # the sandbox ad account whose campaigns bring its Meta leads
    meta_form_id: str = ""  # the Lead Ads form of its page, when it has one


DEMO_ACCOUNTS = (
    DemoAccount("acme", "Acme Ventas", "ARS", "America/Argentina/Buenos_Aires",
                (("alice", "ceo"), ("adam", "admin"), ("maria", "marketing"), ("bob", "seller"), ("carla", "seller"),
                 ("diego", "seller")),
                4.0, "+54911", (150_000, 1_500_000), "act_300001", "900001"),
    DemoAccount("globex", "Globex Iberia", "EUR", "Europe/Madrid",
                (("mallory", "ceo"), ("gary", "seller"), ("helena", "seller")), 1.5, "+34611", (500, 9_000), "act_300003"),
)

STAFF_PERMISSIONS = {
    "crm_marketing": ["lead", "opportunity", "sale", "leadtouch", "systemevent", "account", "membership"],
    "marketing": ["adaccount", "campaign", "adset", "ad", "dailyinsight", "syncrun", "exchangerate"],
    "meta_oauth": ["metaconnection", "whatsappchannel", "metapage"],
}


def staff_group() -> Group:
    """The admin permissions every demo user gets; AccountScopedAdmin limits the rows."""
    group, _ = Group.objects.get_or_create(name="CRM staff")
    codenames = [f"{verb}_{model}" for models in STAFF_PERMISSIONS.values() for model in models for verb in ("view", "add", "change")]
    group.permissions.set(Permission.objects.filter(content_type__app_label__in=STAFF_PERMISSIONS, codename__in=codenames))
    return group


@transaction.atomic
def seed_demo(*, today=None) -> dict[str, int]:
    """Create or refresh the demo; returns the number of leads created per account slug."""
    group = staff_group()
    created: dict[str, int] = {}
    for spec in DEMO_ACCOUNTS:
        account, _ = Account.objects.update_or_create(
            slug=spec.slug, defaults={"name": spec.name, "currency": spec.currency, "timezone": spec.timezone}
        )
        sellers = []
        for username, role in spec.users:
            user = _upsert_user(username, group, staff=role != "seller")
            Membership.objects.update_or_create(user=user, account=account, defaults={"role": role})
            if role == "seller":
                sellers.append(user)
        created[spec.slug] = 0 if Lead.objects.filter(account=account).exists() else _generate_crm(account, spec, sellers, today)
    return created


def _upsert_user(username: str, group: Group, *, staff: bool):
    """Sellers work in the hub and the API; the admin is for ceo, admin and marketing."""
    user, _ = get_user_model().objects.get_or_create(username=username, defaults={"email": f"{username}@demo.invalid"})
    user.is_staff = staff
    user.set_password(DEMO_PASSWORD)
    user.save()
    if staff:
        user.groups.add(group)
    else:
        user.groups.remove(group)
    return user


def _generate_crm(account: Account, spec: DemoAccount, sellers: list, today) -> int:
    rng = random.Random(f"demo-{spec.slug}")
    now = today or timezone.now()
    campaigns = sandbox_campaigns(spec.meta_ad_account_id, now.astimezone(dt.timezone.utc).date())
    leads = []
    for days_ago in range(DEMO_DAYS - 1, -1, -1):
        rate = spec.leads_per_day * (1 + GROWTH * (DEMO_DAYS - days_ago) / DEMO_DAYS)
        for _ in range(max(0, round(rng.gauss(rate, rate ** 0.5)))):
            created_at = now - timedelta(days=days_ago + rng.random())
            leads.append(_lead(account, spec, rng, created_at, campaigns, sellers, index=len(leads)))
    leads = Lead.objects.bulk_create(leads, batch_size=500)
    opportunities, sales = [], []
    for lead in leads:
        opportunity = _opportunity(lead, spec, rng, now)
        if opportunity is not None:
            opportunities.append(opportunity)
    Opportunity.objects.bulk_create(opportunities, batch_size=500)
    for opportunity in opportunities:
        if opportunity.stage == Opportunity.Stage.WON:
            lead = opportunity.lead
            sales.append(Sale(
                account=account, opportunity=opportunity, lead=lead, amount=opportunity.amount, currency=account.currency,
                status="refunded" if rng.random() < 0.04 else "completed", closed_at=opportunity.closed_at,
                lead_source=lead.lead_source, meta_campaign_id=lead.meta_campaign_id,  # what Sale.save copies
            ))
    Sale.objects.bulk_create(sales, batch_size=500)
    _set_lead_statuses(leads, opportunities, rng, now)
    # bulk_create sends no signals: apps (marketing's ROI rollups) rebuild from the rows once committed.
    events.publish(events.CRM_BULK_LOADED, account_id=account.pk)
    return len(leads)


def _lead(account: Account, spec: DemoAccount, rng: random.Random, created_at, campaigns: list[DemoCampaign],
          sellers: list, *, index: int) -> Lead:
    """A lead of that moment: from a Meta campaign running that day (70 %), else organic or manual."""
    running = [c for c in campaigns if c.ran_on(created_at.astimezone(dt.timezone.utc).date())]
    campaign = rng.choice(running) if running and rng.random() < 0.7 else None
    source = campaign.lead_source if campaign else rng.choices(["organic", "manual"], weights=[2, 1])[0]
    return Lead(
        account=account,
        first_name=rng.choice(FIRST_NAMES), last_name=rng.choice(LAST_NAMES),
        phone=f"{spec.phone_prefix}{5550000 + index:07d}", email=f"lead{index}@{spec.slug}.demo.invalid",
        lead_source=source,
        meta_campaign_id=campaign.meta_campaign_id if campaign else "",
        meta_adset_id=campaign.meta_adset_id if campaign else "",
        meta_ad_id=campaign.meta_ad_id if campaign else "",
        meta_form_id=spec.meta_form_id if source == "meta_lead_ads" else "",
        seller=rng.choice(sellers) if sellers else None,
        created_at=created_at, status_changed_at=created_at,
    )


def _opportunity(lead: Lead, spec: DemoAccount, rng: random.Random, now) -> Opportunity | None:
    """About a third of the leads become an opportunity within days; an outcome that would fall
    after ``now`` has not happened yet, so the opportunity is still open."""
    if rng.random() > 0.35:
        return None
    created_at = lead.created_at + timedelta(days=rng.uniform(0.1, MAX_DAYS_TO_OPPORTUNITY))
    if created_at > now:
        return None
    amount = Decimal(rng.randrange(spec.deal_size[0] * 100, spec.deal_size[1] * 100)) / 100
    outcome = rng.choices(["won", "lost", "open"], weights=[40, 25, 35])[0]
    latest_close = MAX_DAYS_TO_CLOSE - (created_at - lead.created_at).total_seconds() / 86400
    closed_at = created_at + timedelta(days=rng.uniform(0.5, latest_close))
    if outcome == "open" or closed_at > now:
        stage, closed_at = rng.choice(["new", "qualified", "proposal", "negotiation"]), None
    else:
        stage = outcome
    return Opportunity(
        account=lead.account, lead=lead, title=f"Plan {rng.choice(['Base', 'Pro', 'Empresa'])}", stage=stage,
        amount=amount, currency=lead.account.currency, seller=lead.seller, created_at=created_at, closed_at=closed_at,
        stage_changed_at=closed_at or created_at,
    )


def _set_lead_statuses(leads: list[Lead], opportunities: list[Opportunity], rng: random.Random, now) -> None:
    """Each lead's status follows its opportunity: converted when won, lost when lost, qualified while
    open; a lead with none is new for a day or two, then contacted or lost."""
    by_lead = {o.lead_id: o for o in opportunities}
    for lead in leads:
        opportunity = by_lead.get(lead.pk)
        if opportunity is not None:
            lead.status = {"won": "converted", "lost": "lost"}.get(opportunity.stage, "qualified")
            lead.status_changed_at = opportunity.closed_at or opportunity.created_at
        elif now - lead.created_at > timedelta(days=2):
            lead.status = rng.choices(["contacted", "lost", "new"], weights=[55, 30, 15])[0]
            lead.status_changed_at = lead.created_at + timedelta(days=rng.uniform(0.1, 2))
    Lead.objects.bulk_update(leads, ["status", "status_changed_at"], batch_size=500)
