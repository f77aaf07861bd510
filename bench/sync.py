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
   bulk_create path. Target: >= 50,000 rows/s. Each run of `upsert_insights` prints where its time
   went (wall and CPU seconds per step: dedupe, COPY + merge, the rollup marks, and the rest, mostly the
   deferred foreign key checks at commit), then the fold a worker runs afterwards, timed apart and not in
   the rows/s (``rollup_marks.fold_account``: the CampaignDay refresh of the marked cells, the coarser
   rollups, and the rest); the CPU seconds (this process and its PostgreSQL backend) do not grow when
   other jobs share the machine.

Prints the load average before and after.
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
from bench.common import host, vacuum  # noqa: E402
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


class Cost:
    """Wall time and CPU time of this process plus its PostgreSQL backend (both on this machine): the CPU
    seconds do not grow when other jobs share the cores, so they say what an idle machine would do."""

    def __init__(self):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.backend = Path(f"/proc/{cursor.fetchone()[0]}/stat")

    def now(self) -> tuple[float, float]:
        fields = self.backend.read_text().rsplit(")", 1)[1].split()
        server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return time.perf_counter(), time.process_time() + server


class Phases:
    """Wall and CPU seconds per step of upsert_insights, by wrapping its steps (the bench's own bookkeeping)."""

    # The upsert only marks its rollup cells; a worker folds them afterwards (marketing.services.rollup_marks).
    STEPS = {"dedupe": "_deduplicated", "COPY + merge": "_copy_and_merge", "rollup marks": "_mark_rollup_from_temp"}

    def __init__(self, cost: Cost):
        from marketing.services import coarse_rollups, insight_store, rollups

        self.cost, self.seconds = cost, {}
        for label, name in self.STEPS.items():
            setattr(insight_store, name, self._timed(label, getattr(insight_store, name)))
        # The fold's steps: the CampaignDay refresh calls the coarser rollups' derive (timed inside it).
        rollups._refresh_meta_cells_in_sql = self._timed("CampaignDay", rollups._refresh_meta_cells_in_sql)
        coarse_rollups.derive = self._timed("coarser rollups", coarse_rollups.derive)

    def _timed(self, label: str, function):
        def timed(*args, **kwargs):
            wall, cpu = self.cost.now()
            try:
                return function(*args, **kwargs)
            finally:
                end_wall, end_cpu = self.cost.now()
                spent = self.seconds.setdefault(label, [0.0, 0.0])
                spent[0] += end_wall - wall
                spent[1] += end_cpu - cpu
        return timed


def bench_upsert(account, runs: int) -> None:
    from django.db import transaction

    from marketing.models import AdAccount, DailyInsight
    from marketing.services import insight_store, rollup_marks

    ad_account = AdAccount.objects.create(account=account, meta_ad_account_id="act_bench_upsert", name="Upsert bench",
                                          currency="ARS", timezone_name=TZ, is_selected=False)

    def bulk_create_path(rows):
        with transaction.atomic():
            insight_store.bulk_upsert(rows)

    cost = Cost()
    phases = Phases(cost)
    # The bench folds right after each upsert itself (below), as the queued task would: the queueing (one
    # broker push per account at commit) is left out, since the ORM broker's enqueue closes the connection
    # whose PostgreSQL backend Cost reads its CPU from.
    rollup_marks.queue_fold = lambda account_id: None
    rng = random.Random(7)
    for label, upsert in (("upsert_insights (COPY + merge)", insight_store.upsert_insights), ("bulk_create path", bulk_create_path)):
        rates: dict[str, list[tuple[float, float]]] = {"insert": [], "overwrite": []}
        for mode in ("insert", "overwrite"):
            for _ in range(runs):
                if mode == "insert":
                    DailyInsight.objects.filter(ad_account=ad_account).delete()
                rows = generated_rows(ad_account, 1000, 100, rng)  # new figures each run: real overwrites
                vacuum(DailyInsight)  # what autovacuum does between syncs; the runs stay comparable
                phases.seconds.clear()
                wall, cpu = cost.now()
                upsert(rows)
                end_wall, end_cpu = cost.now()
                rates[mode].append((len(rows) / (end_wall - wall), end_cpu - cpu))
                if upsert is insight_store.upsert_insights:
                    other = (end_wall - wall - sum(w for w, _ in phases.seconds.values()),
                             end_cpu - cpu - sum(c for _, c in phases.seconds.values()))
                    steps = {**phases.seconds, "commit (foreign key checks) + rest": other}
                    print(f"  {mode} run: " + ", ".join(f"{step} {w:.2f} s ({c:.2f} s CPU)" for step, (w, c) in steps.items()))
                    phases.seconds.clear()
                    wall, cpu = cost.now()
                    folded = rollup_marks.fold_account(account.pk)  # what a worker does after the commit
                    end_wall, end_cpu = cost.now()
                    refresh, coarser = phases.seconds.get("CampaignDay", [0.0, 0.0]), phases.seconds.get("coarser rollups", [0.0, 0.0])
                    print(f"    then the fold of its {folded.marks:,} marks: {end_wall - wall:.2f} s ({end_cpu - cpu:.2f} s CPU): "
                          f"CampaignDay {refresh[0] - coarser[0]:.2f} s ({refresh[1] - coarser[1]:.2f} s CPU), coarser rollups "
                          f"{coarser[0]:.2f} s ({coarser[1]:.2f} s CPU), rest {end_wall - wall - refresh[0]:.2f} s", flush=True)
        assert DailyInsight.objects.filter(ad_account=ad_account).count() == 100_000
        for mode, values in rates.items():
            median = statistics.median(r for r, _ in values)
            print(f"{label}, 100,000 rows ({mode}): median {median:,.0f} rows/s "
                  f"(runs: {', '.join(f'{r:,.0f}' for r, _ in values)}; CPU of client + PostgreSQL "
                  f"{statistics.median(c for _, c in values):.2f} s per 100,000 rows; target >= 50,000 rows/s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--poll-interval", type=float, default=0.05,
                        help="seconds before the first report-run poll (Meta's own job time is not measured)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    url = bench_url(os.environ.get("DATABASE_URL", DEFAULT_URL))
    create_database_if_missing(url)
    setup_django(url)
    print(f"machine: {host()}; load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}", flush=True)
    account = fresh_account()
    try:
        bench_sync(account, args.poll_interval)
        bench_upsert(account, args.runs)
    finally:
        account.delete()
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
