"""Time one full Meta sync and the insights upsert on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crm_bench_sync .venv/bin/python bench/sync.py

Uses the database named in DATABASE_URL when its name contains "bench", else `crm_bench_sync` on the
same server; creates it when missing and migrates it. A throwaway account ("bench-sync") with a
Meta connection and ad account act_300001 is (re)created, and deleted at the end.

1. Starts `MetaSandbox(ads=200, days=28)` in-process on a free port and times one full sync
   (campaigns, ad sets, ads, the 28-day window of 200 ads x 28 days = 5,600 insight rows, the
   history probe), printing wall time, Graph calls and rows. Targets: < 5 s, < 80 Graph calls.
2. Upserts 100,000 generated insight rows (1,000 ads x 100 days) three times into an empty table
   (insert) and three times over existing rows (overwrite), printing the median rows/s of each,
   through `upsert_insights` (COPY + merge on PostgreSQL) and, for comparison, the portable
   bulk_create path. Target: >= 20,000 rows/s.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/crm_bench_sync"
SLUG = "bench-sync"
TZ = "America/Argentina/Buenos_Aires"


def bench_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        sys.exit("bench/sync.py measures PostgreSQL: set DATABASE_URL=postgres://...")
    if "bench" not in parts.path.lstrip("/"):
        parts = parts._replace(path="/crm_bench_sync")
    return urlunsplit(parts)


def create_database_if_missing(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_marketing.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fresh_account():
    from crm_marketing.models import Account

    Account.objects.filter(slug=SLUG).delete()
    return Account.objects.create(name="Bench sync", slug=SLUG, currency="ARS", timezone=TZ)


def bench_sync(account, poll_interval: float) -> None:
    from django.conf import settings

    from crm_marketing.graph import GraphClient
    from crm_marketing.sandbox import MetaSandbox
    from marketing.models import AdAccount, DailyInsight
    from marketing.services.insights import ad_account_today
    from meta_oauth.models import MetaConnection

    ad_account = AdAccount(account=account, meta_ad_account_id="act_300001", name="Acme - Leads AR", currency="ARS",
                           timezone_name=TZ)
    today = ad_account_today(ad_account)  # the sandbox's "today" matches the ad account's day
    with MetaSandbox(ads=200, days=28, today=today) as sandbox:
        settings.META_GRAPH_URL = sandbox.base_url
        token = sandbox.issue_token()
        connection = MetaConnection(account=account, status=MetaConnection.Status.CONNECTED)
        connection.set_token(token)
        connection.save()
        ad_account.save()
        from marketing.services.sync import sync_ad_account

        client = GraphClient(token)
        started = time.perf_counter()
        result = sync_ad_account(ad_account, client=client, poll_interval=poll_interval)
        elapsed = time.perf_counter() - started
        served = len(sandbox.requests)
    rows = DailyInsight.objects.filter(ad_account=ad_account).count()
    print(f"full sync: {result.status}, {elapsed:.2f} s wall, {result.graph_calls} Graph calls "
          f"(sandbox served {served}), {result.rows} insight rows read, {rows} stored, "
          f"{result.entities} campaigns/ad sets/ads; report poll interval {poll_interval} s "
          f"(targets: < 5 s, < 80 calls)")


def generated_rows(ad_account, ads: int, days: int, rng: random.Random) -> list[tuple]:
    """Insight tuples in insight_store.COLUMNS order, as the sync hands them over."""
    from django.utils import timezone

    first = dt.date.today() - dt.timedelta(days=days)
    now = timezone.now()
    return [(ad_account.account_id, ad_account.pk, str(400000 + ad // 20), str(500000 + ad // 5), str(9000000 + ad),
             first + dt.timedelta(days=day), "ARS", Decimal(rng.randint(100, 9_000_000)) / 100,
             rng.randint(800, 20000), rng.randint(10, 500), rng.randint(5, 400), rng.randint(500, 15000),
             rng.randint(0, 30), now)
            for ad in range(ads) for day in range(days)]


def vacuum(model) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


def bench_upsert(account, runs: int) -> None:
    from django.db import transaction

    from marketing.models import AdAccount, DailyInsight
    from marketing.services.insight_store import bulk_upsert, upsert_insights

    ad_account = AdAccount.objects.create(account=account, meta_ad_account_id="act_bench_upsert", name="Upsert bench",
                                          currency="ARS", timezone_name=TZ, is_selected=False)

    def bulk_create_path(rows):
        with transaction.atomic():
            bulk_upsert(rows)

    rng = random.Random(7)
    for label, upsert in (("upsert_insights (COPY + merge)", upsert_insights), ("bulk_create path", bulk_create_path)):
        rates: dict[str, list[float]] = {"insert": [], "overwrite": []}
        for mode in ("insert", "overwrite"):
            for _ in range(runs):
                if mode == "insert":
                    DailyInsight.objects.filter(ad_account=ad_account).delete()
                rows = generated_rows(ad_account, 1000, 100, rng)  # new figures each run: real overwrites
                vacuum(DailyInsight)  # what autovacuum does between syncs; the runs stay comparable
                started = time.perf_counter()
                upsert(rows)
                rates[mode].append(len(rows) / (time.perf_counter() - started))
        assert DailyInsight.objects.filter(ad_account=ad_account).count() == 100_000
        for mode, values in rates.items():
            print(f"{label}, 100,000 rows ({mode}): median {statistics.median(values):,.0f} rows/s "
                  f"(runs: {', '.join(f'{r:,.0f}' for r in values)}; target >= 20,000 rows/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--poll-interval", type=float, default=0.05,
                        help="seconds before the first report-run poll (Meta's own job time is not measured)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    url = bench_url(os.environ.get("DATABASE_URL", DEFAULT_URL))
    create_database_if_missing(url)
    setup_django(url)
    account = fresh_account()
    try:
        bench_sync(account, args.poll_interval)
        bench_upsert(account, args.runs)
    finally:
        account.delete()


if __name__ == "__main__":
    main()
