"""Demo data: two accounts, a user per role, a few hundred leads with opportunities and sales.

Deterministic (fixed random seed) and idempotent: accounts and users are upserted, and an
account's CRM rows are generated only when it has none yet.
"""
from __future__ import annotations

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

DEMO_PASSWORD = "demo-pass-2026"
# Campaign and ad ids of the Meta sandbox's fixture, so demo leads line up with sandbox spend.
SANDBOX_CAMPAIGNS = [("400001", "500001", "700001"), ("400002", "500002", "700002"), ("400003", "500003", "700003")]
FIRST_NAMES = ["María", "Lucas", "Sofía", "Mateo", "Valentina", "Juan", "Camila", "Martín", "Lucía", "Diego", "Julieta", "Tomás"]
LAST_NAMES = ["Pérez", "Gómez", "Rodríguez", "Fernández", "López", "Díaz", "Martínez", "Romero", "Sosa", "Álvarez"]


@dataclass(frozen=True)
class DemoAccount:
    slug: str
    name: str
    currency: str
    timezone: str
    users: tuple[tuple[str, str], ...]  # (username, role)
    leads: int
    phone_prefix: str
    deal_size: tuple[int, int]  # smallest and largest deal, in whole units of the currency


DEMO_ACCOUNTS = (
    DemoAccount("acme", "Acme Ventas", "ARS", "America/Argentina/Buenos_Aires",
                (("alice", "ceo"), ("adam", "admin"), ("maria", "marketing"), ("bob", "seller")), 320, "+54911", (150_000, 1_500_000)),
    DemoAccount("globex", "Globex Iberia", "EUR", "Europe/Madrid",
                (("mallory", "ceo"), ("gary", "seller")), 140, "+34611", (500, 9_000)),
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
    leads = []
    for i in range(spec.leads):
        source = rng.choices(["meta_lead_ads", "meta_ctwa", "organic", "manual"], weights=[45, 25, 20, 10])[0]
        campaign, adset, ad = rng.choice(SANDBOX_CAMPAIGNS) if source.startswith("meta") else ("", "", "")
        leads.append(Lead(
            account=account,
            first_name=rng.choice(FIRST_NAMES), last_name=rng.choice(LAST_NAMES),
            phone=f"{spec.phone_prefix}{5550000 + i:07d}", email=f"lead{i}@{spec.slug}.demo.invalid",
            status=rng.choice(["new", "contacted", "qualified", "converted", "lost"]),
            lead_source=source, meta_campaign_id=campaign, meta_adset_id=adset, meta_ad_id=ad,
            seller=rng.choice(sellers) if sellers else None,
            created_at=now - timedelta(days=rng.uniform(0, 90)),
        ))
    Lead.objects.bulk_create(leads, batch_size=500)
    # bulk_create sends no signals: apps (marketing's ROI rollups) rebuild from the rows once committed.
    events.publish(events.CRM_BULK_LOADED, account_id=account.pk)
    leads = list(Lead.objects.filter(account=account))
    for lead in leads:
        if rng.random() > 0.35:
            continue
        created_at = lead.created_at + timedelta(days=rng.uniform(0, 7))
        if created_at > now:
            created_at = now
        amount = Decimal(rng.randrange(spec.deal_size[0] * 100, spec.deal_size[1] * 100)) / 100
        stage = rng.choices(["new", "qualified", "proposal", "won", "lost"], weights=[15, 15, 15, 35, 20])[0]
        closed_at = min(created_at + timedelta(days=rng.uniform(1, 20)), now) if stage in ("won", "lost") else None
        opportunity = Opportunity.objects.create(
            account=account, lead=lead, title=f"Plan {rng.choice(['Base', 'Pro', 'Empresa'])}", stage=stage,
            amount=amount, currency=account.currency, seller=lead.seller, created_at=created_at, closed_at=closed_at,
        )
        if stage == "won":
            Sale.objects.create(
                account=account, opportunity=opportunity, lead=lead, amount=amount, currency=account.currency,
                status="refunded" if rng.random() < 0.05 else "completed", closed_at=closed_at,
            )
    return len(leads)
