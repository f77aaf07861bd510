"""Tenant isolation, proven over every route of the URLconf.

Every view under /crm/ must be built on the account-scoped base (or be on the short allowlist).
Then, for every route, mallory (ceo of globex) gets 404 for acme's objects, finds none of acme's
data in any answer, and cannot write into acme.
"""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver

from crm_marketing.api import AccountScopedMixin
from crm_marketing.models import Account
from crm_marketing.tenancy import AccountOwned
from tests.conftest import make_lead, make_opportunity, make_sale

# Not account-scoped on purpose: Meta's redirect (checked against the OAuth state instead), the
# public API description, and the JSON 404 for unknown /crm/ paths.
ALLOWLIST = {"crm/auth/meta/callback", "crm/schema/", "crm/docs/", "crm/"}
# About the caller only (their user and memberships; no account-owned rows), so not on the
# account-scoped bases; still walked below like every route, so mallory's answers are checked too.
USER_SCOPED = {"crm/me/?"}
MARKER = "ACMESECRET"


def walk(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from walk(entry, route)
        elif isinstance(entry, URLPattern):
            yield route, entry


def view_class(pattern: URLPattern):
    callback = pattern.callback
    return getattr(callback, "cls", None) or getattr(callback, "view_class", None)


def api_routes():
    for route, pattern in walk():
        clean = re.sub(r"(^|/)\^", r"\1", route).replace("$", "").replace("\\Z", "")
        if clean.startswith("crm/"):
            yield clean, pattern


def test_every_crm_view_is_account_scoped_or_allowlisted():
    unscoped = []
    for route, pattern in api_routes():
        cls = view_class(pattern)
        if route in ALLOWLIST or route in USER_SCOPED or (cls is not None and issubclass(cls, AccountScopedMixin)):
            continue
        unscoped.append(route)
    assert unscoped == []


def test_a_view_cannot_override_the_scoping():
    from crm_marketing.api import AccountScopedViewSet

    with pytest.raises(TypeError, match="bypass account scoping"):
        type("Sneaky", (AccountScopedViewSet,), {"get_queryset": lambda self: None})


def acme_dataset(acme: Account) -> dict[str, object]:
    """acme rows of every kind, each carrying MARKER in a text field or id."""
    lead = make_lead(acme, first_name=f"{MARKER}Lead", email="secret@acme.example", lead_source="meta_lead_ads", meta_campaign_id="990001")
    opportunity = make_opportunity(lead, title=f"{MARKER}Deal", amount=Decimal("4321.00"))
    sale = make_sale(lead, "4321.00", opportunity=opportunity)
    rows = {"lead": lead, "opportunity": opportunity, "sale": sale}
    if apps.is_installed("marketing"):
        from marketing.models import AdAccount, Campaign, DailyInsight

        ad_account = AdAccount.objects.create(account=acme, meta_ad_account_id="act_990000", name=f"{MARKER}AdAccount", currency=acme.currency)
        campaign = Campaign.objects.create(account=acme, ad_account=ad_account, meta_campaign_id="990001", name=f"{MARKER}Campaign", status="ACTIVE")
        DailyInsight.objects.create(
            account=acme, ad_account=ad_account, meta_campaign_id="990001", meta_adset_id="990002", meta_ad_id="990003",
            date=date.today(), currency=acme.currency, spend=Decimal("777.77"), impressions=1, clicks=1, synced_at=lead.created_at,
        )
        rows.update({"adaccount": ad_account, "campaign": campaign})
    if apps.is_installed("meta_oauth"):
        from meta_oauth.models import MetaPage, WhatsAppChannel

        rows["whatsappchannel"] = WhatsAppChannel.objects.create(
            account=acme, meta_waba_id="1200001", meta_phone_number_id="1300001", verified_name=f"{MARKER}Channel")
        page = MetaPage(account=acme, meta_page_id="1500001", name=f"{MARKER}Page")
        page.set_page_token(f"{MARKER}PageToken")
        page.save()
        rows["metapage"] = page
    if apps.is_installed("automation"):
        from automation.models import AutomationRule, MessageSend, MessageTemplate, RuleStep

        template = MessageTemplate.objects.create(account=acme, meta_template_id="990010", meta_waba_id="990011",
                                                  name=f"{MARKER}template", language="es", status="APPROVED")
        rule = AutomationRule.objects.create(account=acme, name=f"{MARKER}Rule", trigger_type="lead_created")
        step = RuleStep.objects.create(account=acme, rule=rule, template=template)
        send = MessageSend.objects.create(account=acme, rule=rule, step=step, lead=lead, template=template,
                                          trigger_type="lead_created", trigger_key="event:990012", rule_name=f"{MARKER}Rule",
                                          template_name=f"{MARKER}template", status="sent", due_at=lead.created_at,
                                          sent_at=lead.created_at)
        rows.update({"messagetemplate": template, "automationrule": rule, "rulestep": step, "messagesend": send})
    return rows


def fill(route: str, rows: dict[str, object], pattern: URLPattern) -> str | None:
    """The route's URL with acme's object in every path parameter, or None when it has none."""
    names = re.findall(r"\(\?P<(\w+)>[^)]*\)|<(?:\w+:)?(\w+)>", route)
    if not names:
        return "/" + route.replace("/?", "/")
    cls = view_class(pattern)
    model = getattr(getattr(cls, "queryset", None), "model", None)
    key = model._meta.model_name if model is not None else "campaign"
    obj = rows.get(key)
    if obj is None:
        pytest.fail(f"No acme object to put in {route}: teach acme_dataset about {key}")
    value = str(getattr(obj, "meta_campaign_id", None) or obj.pk) if key == "campaign" else str(obj.pk)
    url = re.sub(r"\(\?P<\w+>[^)]*\)|<(?:\w+:)?\w+>", value, route)
    return "/" + url.replace("/?", "/").replace("\\.(?P<format>[a-z0-9]+)", "")


def acme_snapshot(acme: Account) -> dict[str, int]:
    counts = {}
    for model in apps.get_models():
        if issubclass(model, AccountOwned):
            counts[model._meta.label] = model.objects.filter(account=acme).count()
    return counts


@pytest.mark.django_db
def test_mallory_gets_404_for_acme_objects_and_sees_none_of_them_on_any_route(acme, alice, mallory, mallory_api):
    rows = acme_dataset(acme)
    checked = []
    for route, pattern in api_routes():
        if route in ALLOWLIST or "(?P<format>" in route:
            continue
        url = fill(route, rows, pattern)
        has_object = url != "/" + route.replace("/?", "/")
        response = mallory_api.get(url)
        body = response.content.decode()
        assert MARKER not in body and "secret@acme.example" not in body and "777.77" not in body, f"{url} leaks acme data"
        if has_object:
            assert response.status_code in (404, 405), f"{url} answered {response.status_code} to mallory"
        else:
            assert response.status_code != 500, url
        checked.append(url)
    assert "/crm/leads/" in checked and f"/crm/leads/{rows['lead'].pk}/" in checked and "/crm/me/" in checked


@pytest.mark.django_db
def test_mallory_cannot_write_into_acme_on_any_route(acme, alice, mallory, mallory_api):
    rows = acme_dataset(acme)
    before = acme_snapshot(acme)
    lead = rows["lead"]
    for route, pattern in api_routes():
        if route in ALLOWLIST or "(?P<format>" in route:
            continue
        url = fill(route, rows, pattern)
        payload = {"lead": lead.pk, "opportunity": rows["opportunity"].pk, "amount": "1.00", "first_name": "Intruder", "phone": "+5491100000000", "status": "lost", "stage": "lost"}
        for method in ("post", "patch", "delete"):
            response = getattr(mallory_api, method)(url, payload, format="json")
            assert response.status_code != 500, f"{method} {url}"
            assert response.status_code not in (200, 201, 202) or acme_snapshot(acme) == before, f"{method} {url} wrote into acme"
            as_acme = getattr(mallory_api, method)(url, payload, format="json", HTTP_X_ACCOUNT="acme")
            assert as_acme.status_code in (403, 405), f"{method} {url} with X-Account: acme answered {as_acme.status_code}"
    assert acme_snapshot(acme) == before
    lead.refresh_from_db()
    assert (lead.first_name, lead.status) == (f"{MARKER}Lead", "new")


@pytest.mark.django_db
def test_filters_naming_acme_rows_find_nothing_for_mallory(acme, alice, mallory, mallory_api):
    rows = acme_dataset(acme)
    lead, campaign = rows["lead"], rows.get("campaign")
    queries = [("/crm/opportunities", {"lead": lead.pk}), ("/crm/sales", {"lead": lead.pk}), ("/crm/leads", {"seller": alice.pk}),
               ("/crm/leads", {"meta_campaign_id": "990001"}), ("/crm/leads", {"email": lead.email}), ("/crm/leads", {"phone": lead.phone})]
    if "messagesend" in rows:
        queries += [("/crm/marketing/automation-logs", {"lead": lead.pk}), ("/crm/marketing/automation-logs", {"rule": rows["automationrule"].pk})]

    for url, params in queries:
        response = mallory_api.get(url, params)

        assert (response.status_code, response.json()["data"]["total"]) == (200, 0), (url, params)
    if campaign is not None:
        timeseries = mallory_api.get(f"/crm/marketing/stats/timeseries?campaign_id={campaign.meta_campaign_id}")
        assert timeseries.status_code == 404
        assert MARKER not in timeseries.content.decode()
