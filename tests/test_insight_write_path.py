"""The insights table keeps its references with one composite foreign key (migration 0011): an insight's ad
account must exist and belong to the insight's account, whichever way the row is written."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from marketing.models import DailyInsight
from marketing.services.insight_store import upsert_insights
from tests.factories import make_ad_account

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the composite foreign key is PostgreSQL's (SQLite has none)"),
]


def checked_now() -> None:
    """Foreign keys are deferred to the commit, which a test never reaches: check them at once instead."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def test_an_insight_of_acmes_ad_account_filed_under_globex_is_refused(acme, globex):
    acme_ads = make_ad_account(acme, "act_acme", "USD", selected=True)
    checked_now()

    with pytest.raises(IntegrityError, match="insight_ad_account_of_account"), transaction.atomic():
        DailyInsight.objects.create(account=globex, ad_account=acme_ads, meta_campaign_id="1", meta_adset_id="2",
                                    meta_ad_id="3", date=dt.date(2025, 3, 1), currency="USD", spend=Decimal("1.00"),
                                    synced_at=timezone.now())

    assert not DailyInsight.objects.exists()


def test_the_bulk_upsert_of_a_row_naming_an_ad_account_that_does_not_exist_writes_nothing(acme):
    acme_ads = make_ad_account(acme, "act_acme", "USD", selected=True)
    checked_now()
    row = (acme.pk, acme_ads.pk, "1", "2", "3", dt.date(2025, 3, 1), "USD", Decimal("1.00"), 10, 1, 0, 0, 0, timezone.now())

    with pytest.raises(IntegrityError, match="insight_ad_account_of_account"):
        upsert_insights([row, (*row[:1], acme_ads.pk + 999, *row[2:])])

    assert not DailyInsight.objects.exists()
