"""Writes into the ROI rollup: Meta-attributed leads poured into one account, and how soon the stats
include them.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crm_bench .venv/bin/python bench/writes.py \\
        [--rate 300] [--seconds 10] [--webhook-rate 1000] [--webhook-seconds 5] [--runs 3] [--parts services,webhooks]

Needs the account bench/generate.py built (any --scale). Each run's leads are deleted again at its end and
their cells folded, so later runs and the read benchmarks see the generated data. Production settings:
DEBUG off, the Redis cache and broker on BENCH_REDIS_URL (default redis://127.0.0.1:6379/6, flushed at the
start), one `manage.py qcluster` (Q_WORKERS=--q-workers) as the worker, the Meta sandbox in its own
process; the schedules other than the rollup's fold sweep are deleted from this database so that no sync
or nightly rebuild runs while it measures.

(a) services: --writers processes call crm_marketing.services.create_lead (a Meta lead ads lead in one of
    the account's campaigns) on a fixed schedule adding up to --rate leads/s for --seconds;
(b) webhooks: signed leadgen deliveries of --batch changes each, posted to gunicorn (--web-workers) at
    --webhook-rate leads/s for --webhook-seconds; the worker fetches the leads from the sandbox and records
    them (intake -> stored events -> drain -> one Graph batch request per 50 leads -> lead rows); end to end =
    post to lead row. "achieved" = leads / (last lead row - first post): at most the offered rate, and below it by
    the pipeline's latency, so a rate is shown to be sustained by offering more (--webhook-rate 1500) or by the
    last lead row following the last post closely at the offered rate (printed).
During each, a probe writes one lead every 0.25 s through the service into its own campaign and reads
GET campaigns/{probe} (Django's test Client, the whole view) until the figure includes it (the p95 of
that latency), while a watcher records when the rollup table holds it (the fold's lag). After the last
write, the stats of today, 30d, 90d and lifetime are compared with an independent SQL recomputation from
the raw tables (leads, opportunities, revenue by the lead's attribution, spend), at once and again once the
worker has folded every mark; and today's rollup cells one by one. CPU per lead by role: the writers, the
worker, the web server, the sandbox, this database's PostgreSQL backends, and apart the bench's own Python
and the backends of its probe, watcher and reads (``bench``, ``bench_postgres``: not the product's).
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import host, loadavg, percentile, vacuum  # noqa: E402
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/crm_bench"
APP_SECRET = os.environ.setdefault("BENCH_WRITES_APP_SECRET", "bench-writes-" + secrets.token_hex(8))  # the sandbox process gets it too
PAGE_ID, PROBE_CAMPAIGN, META_USER = "1590001", "199000000001", "10001"
WINDOWS = ("today", "30d", "90d", "lifetime")
HAS_MARKS = True  # False when --app-root is a checkout from before the marks (the rollup refreshed inline)




# -- processes ------------------------------------------------------------------------------------------------
def environment(url: str, sandbox_port: int, redis_url: str, q_workers: int) -> dict[str, str]:
    from cryptography.fernet import Fernet

    return {**os.environ, "DATABASE_URL": url, "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50),
            "META_TOKEN_KEYS": Fernet.generate_key().decode(), "META_APP_SECRET": APP_SECRET,
            "META_GRAPH_URL": f"http://127.0.0.1:{sandbox_port}", "CACHE_URL": redis_url, "Q_BROKER_URL": redis_url,
            "Q_WORKERS": str(q_workers), "Q_SYNC": "false", "WEBHOOK_RATE_LIMIT": "100000000/m", "API_RATE_LIMIT": "100000000/m",
            "LOG_LEVEL": "WARNING", "SECURE_SSL_REDIRECT": "false", "DJANGO_SETTINGS_MODULE": "crm_marketing.settings",
            "PYTHONUNBUFFERED": "1"}


def serve_sandbox(port: int, first_id: int, leads: int) -> None:
    """The --serve-sandbox mode: a Meta sandbox holding ``leads`` Lead Ads leads (ids from ``first_id``)."""
    from crm_marketing.sandbox import MetaSandbox

    sandbox = MetaSandbox(port=port, app_secret=APP_SECRET)
    for i in range(1, leads + 1):
        sandbox.add_lead(lead_id=str(first_id + i - 1), full_name=f"Webhook Lead {i}", email=f"wh{i}@bench.example",
                         phone=f"+5493{i:09d}")
    print(json.dumps({"token": sandbox.issue_token(META_USER)}), flush=True)
    sandbox.serve_forever()


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True, text=True)


def wait_for_http(port: int, path: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"nothing answered on port {port}")


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children that exited (Linux /proc), for the worker's share."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


# -- the independent recomputation ------------------------------------------------------------------------------
META = "('meta_lead_ads', 'meta_ctwa')"


def truth(account, since, until) -> dict:
    """The stats endpoint's leads, opportunities, revenue and spend over [since, until], in SQL on the raw tables
    (CRM moments cut at midnight in the account's timezone; revenue follows the lead's attribution)."""
    from django.db import connection

    rates = {"USD": Decimal(1)} | {c: Decimal(r) for c, r in account_rates(account).items()}
    tz, a = account.timezone, account.pk
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM crm_marketing_lead WHERE account_id = %s AND lead_source IN {META} "
                       "AND (created_at AT TIME ZONE %s)::date BETWEEN %s AND %s", [a, tz, since, until])
        leads = cursor.fetchone()[0]
        cursor.execute(f"SELECT count(*) FROM crm_marketing_opportunity o JOIN crm_marketing_lead l ON l.id = o.lead_id "
                       f"WHERE o.account_id = %s AND l.lead_source IN {META} AND (o.created_at AT TIME ZONE %s)::date BETWEEN %s AND %s",
                       [a, tz, since, until])
        opportunities = cursor.fetchone()[0]
        cursor.execute(f"SELECT s.currency, sum(s.amount) FROM crm_marketing_sale s JOIN crm_marketing_lead l ON l.id = s.lead_id "
                       f"WHERE s.account_id = %s AND s.status = 'completed' AND l.lead_source IN {META} "
                       "AND (s.closed_at AT TIME ZONE %s)::date BETWEEN %s AND %s GROUP BY s.currency", [a, tz, since, until])
        revenue = sum(amount * rates[currency] for currency, amount in cursor.fetchall())
        cursor.execute("SELECT currency, sum(spend) FROM marketing_dailyinsight WHERE account_id = %s AND date BETWEEN %s AND %s "
                       "GROUP BY currency", [a, since, until])
        spend = sum(amount * rates[currency] for currency, amount in cursor.fetchall())
    cents = Decimal("0.01")
    return {"leads": leads, "opportunities": opportunities, "sales_revenue": Decimal(revenue).quantize(cents),
            "marketing_spend": Decimal(spend).quantize(cents)}


def account_rates(account) -> dict[str, str]:
    from marketing.models import ExchangeRate

    return dict(ExchangeRate.objects.filter(account=account, to_currency=account.currency).values_list("from_currency", "rate"))


def read_stats(client, account) -> dict[str, dict]:
    """The stats endpoint's figures and period for every window, read now."""
    from marketing.stats.reports import today_for

    answers = {}
    for window in WINDOWS:
        query = f"since={today_for(account)}&until={today_for(account)}" if window == "today" else f"time_range={window}"
        data = client.get(f"/crm/marketing/stats?{query}").json()["data"]
        answers[window] = {"leads": data["leads"], "opportunities": data["opportunities"],
                           "sales_revenue": Decimal(str(data["sales_revenue"])).quantize(Decimal("0.01")),
                           "marketing_spend": Decimal(str(data["marketing_spend"])).quantize(Decimal("0.01")),
                           "period": (data["period"]["since"], data["period"]["until"])}
    return answers


def differences_from_truth(account, answers: dict[str, dict]) -> list[str]:
    """Each window's answer against the SQL recomputation over its period (the raw rows do not move meanwhile)."""
    differences = []
    for window, answer in answers.items():
        figures = {k: v for k, v in answer.items() if k != "period"}
        expected = truth(account, *answer["period"])
        if figures != expected:
            differences.append(f"{window}: stats {figures} != SQL {expected}")
    return differences


def rollup_matches_truth(account, day) -> bool:
    """Today's rollup rows, cell by cell, equal SQL on the raw tables (leads, opportunities, revenue, spend)."""
    from django.db import connection

    from marketing.models import CampaignDay

    stored = {(r[0], r[1]): tuple(r[2:]) for r in CampaignDay.objects.filter(account=account, day=day)
              .values_list("meta_campaign_id", "currency", "leads", "opportunities", "revenue", "spend")}
    cells: dict = {}
    tz, a = account.timezone, account.pk
    queries = [
        (f"SELECT meta_campaign_id, %s, count(*) FROM crm_marketing_lead WHERE account_id = %s AND lead_source IN {META} "
         "AND (created_at AT TIME ZONE %s)::date = %s GROUP BY 1", [account.currency, a, tz, day], 0),
        (f"SELECT l.meta_campaign_id, %s, count(*) FROM crm_marketing_opportunity o JOIN crm_marketing_lead l ON l.id = o.lead_id "
         f"WHERE o.account_id = %s AND l.lead_source IN {META} AND (o.created_at AT TIME ZONE %s)::date = %s GROUP BY 1",
         [account.currency, a, tz, day], 1),
        (f"SELECT l.meta_campaign_id, s.currency, sum(s.amount) FROM crm_marketing_sale s JOIN crm_marketing_lead l ON l.id = s.lead_id "
         f"WHERE s.account_id = %s AND s.status = 'completed' AND l.lead_source IN {META} "
         "AND (s.closed_at AT TIME ZONE %s)::date = %s GROUP BY 1, 2", [a, tz, day], 2),
        ("SELECT meta_campaign_id, currency, sum(spend) FROM marketing_dailyinsight WHERE account_id = %s AND date = %s "
         "GROUP BY 1, 2", [a, day], 3),
    ]
    with connection.cursor() as cursor:
        for sql, params, index in queries:
            cursor.execute(sql, params)
            for campaign, currency, value in cursor.fetchall():
                cells.setdefault((campaign, currency), [0, 0, Decimal("0.00"), Decimal("0.00")])[index] = value
    return stored == {cell: tuple(values) for cell, values in cells.items() if any(values)}


# -- the probe ----------------------------------------------------------------------------------------------------
class Probe:
    """One service write every 0.25 s into the probe campaign; read until the stats include it; watch the rollup."""

    def __init__(self, account, client, tag: int):
        self.account, self.client, self.tag = account, client, tag
        self.read_ms: list[float] = []
        self.fold_ms: list[float] = []
        self.stop = threading.Event()
        self.commits: list[float] = []

    def run(self) -> None:
        from django.db import connections

        from crm_marketing import services
        from marketing.models import CampaignDay
        from marketing.stats.reports import today_for

        note_backend()
        day = today_for(self.account)
        base = CampaignDay.objects.filter(account=self.account, day=day, meta_campaign_id=PROBE_CAMPAIGN).values_list("leads", flat=True).first() or 0
        self.watcher = threading.Thread(target=self.watch, args=(day, base), daemon=True)
        self.watcher.start()
        n = 0
        while not self.stop.is_set():
            n += 1
            services.create_lead(self.account, first_name="Probe", phone=f"+5494{self.tag:03d}{n:06d}", lead_source="meta_lead_ads",
                                 meta_campaign_id=PROBE_CAMPAIGN)
            committed = time.monotonic()
            self.commits.append(committed)
            while True:
                data = self.client.get(f"/crm/marketing/campaigns/{PROBE_CAMPAIGN}?since={day}&until={day}").json()["data"]
                if data["performance"]["leads"] >= base + n:
                    self.read_ms.append((time.monotonic() - committed) * 1000)
                    break
            self.stop.wait(max(0.0, 0.25 - (time.monotonic() - committed)))
        connections.close_all()

    def watch(self, day, base: int) -> None:
        from django.db import connections

        from marketing.models import CampaignDay

        note_backend()
        seen, deadline = 0, None
        while not self.stop.is_set() or seen < len(self.commits):
            if self.stop.is_set():
                deadline = deadline or time.monotonic() + 300
                if time.monotonic() > deadline or not HAS_MARKS:
                    break
            stored = CampaignDay.objects.filter(account=self.account, day=day, meta_campaign_id=PROBE_CAMPAIGN).values_list("leads", flat=True).first() or 0
            now = time.monotonic()
            while seen < min(stored - base, len(self.commits)):
                self.fold_ms.append((now - self.commits[seen]) * 1000)
                seen += 1
            time.sleep(0.02)
        connections.close_all()


# -- (a) through the services ---------------------------------------------------------------------------------------
def write_leads(proc: int, tag: int, start_at: float, rate: float, count: int, campaigns: list[tuple[str, str, str]]) -> list[tuple]:
    """One writer process: ``count`` leads at ``rate``/s from ``start_at`` (wall clock); (due, started, done) each."""
    from django.db import connections

    from crm_marketing import services
    from crm_marketing.models import Account

    connections.close_all()  # forked: never share the parent's connection
    account = Account.objects.get(slug="bench")
    timings = []
    for i in range(count):
        due = start_at + i / rate
        time.sleep(max(0.0, due - time.time()))
        started = time.time()
        campaign, adset, ad = campaigns[(proc + i * 7) % len(campaigns)]
        services.create_lead(account, first_name="Writer", phone=f"+5492{tag:03d}{proc:02d}{i:06d}", lead_source="meta_lead_ads",
                             meta_campaign_id=campaign, meta_adset_id=adset, meta_ad_id=ad)
        timings.append((due, started, time.time()))
    connections.close_all()
    return timings


def run_services(account, args, tag: int) -> tuple[dict, float]:
    from django.db import connections

    from marketing.models import Ad

    campaigns = list(Ad.objects.filter(account=account).order_by("meta_ad_id").values_list("meta_campaign_id", "meta_adset_id", "meta_ad_id"))
    per_writer = int(args.rate * args.seconds / args.writers)
    connections.close_all()
    start_at = time.time() + 1.0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with multiprocessing.get_context("fork").Pool(args.writers) as pool:
        results = pool.starmap(write_leads, [(p, tag, start_at + p / args.rate, args.rate / args.writers, per_writer, campaigns)
                                             for p in range(args.writers)])
        pool.close()
        pool.join()  # the writers exit: their CPU shows in RUSAGE_CHILDREN
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    writers_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    timings = [t for result in results for t in result]
    first, last = min(t[1] for t in timings), max(t[2] for t in timings)
    latencies = [(done - started) * 1000 for _, started, done in timings]
    late = [(started - due) * 1000 for due, started, _ in timings]
    return {"writes": len(timings), "offered_per_s": args.rate, "achieved_per_s": len(timings) / (last - first),
            "write_median_ms": statistics.median(latencies), "write_p95_ms": percentile(latencies, 0.95),
            "start_late_p95_ms": percentile(late, 0.95), "writers_cpu_s": writers_cpu}, last


# -- (b) through the leadgen webhook --------------------------------------------------------------------------------
def leadgen_delivery(ids: list[int]) -> tuple[bytes, dict[str, str]]:
    from crm_marketing.sandbox import sign

    now = int(time.time())
    changes = [{"field": "leadgen", "value": {"leadgen_id": str(i), "page_id": PAGE_ID, "form_id": "900001", "ad_id": "700001",
                                              "adgroup_id": "700001", "created_time": now}} for i in ids]
    body = json.dumps({"object": "page", "entry": [{"id": PAGE_ID, "time": now, "changes": changes}]}).encode()
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, APP_SECRET)}


def run_webhooks(account, args, port: int, first_id: int) -> tuple[dict, float]:
    from crm_marketing.models import LeadTouch

    total = int(args.webhook_rate * args.webhook_seconds)
    ids = list(range(first_id, first_id + total))
    deliveries = [ids[i:i + args.batch] for i in range(0, total, args.batch)]
    bodies = [leadgen_delivery(chunk) for chunk in deliveries]
    local = threading.local()
    posted_at: dict[int, float] = {}
    answers: list[float] = []
    lock = threading.Lock()
    start_at = time.time() + 0.5

    def post(index: int) -> None:
        time.sleep(max(0.0, start_at + index * args.batch / args.webhook_rate - time.time()))
        if getattr(local, "conn", None) is None:
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        started = time.time()
        local.conn.request("POST", "/webhooks/meta", body=bodies[index][0], headers=bodies[index][1])
        response = local.conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"webhook answered {response.status}")
        with lock:
            answers.append((time.time() - started) * 1000)
            for leadgen_id in deliveries[index]:
                posted_at[leadgen_id] = started

    with ThreadPoolExecutor(max_workers=args.clients) as pool:
        list(pool.map(post, range(len(bodies))))
    touches = LeadTouch.objects.filter(account=account, external_id__in=[str(i) for i in ids])
    deadline = time.monotonic() + 900
    while touches.count() < total:
        if time.monotonic() > deadline:
            sys.exit(f"only {touches.count()} of {total} webhook leads arrived in 15 minutes")
        time.sleep(0.2)
    rows = list(touches.values_list("external_id", "lead__updated_at"))
    end_to_end = [(row_at.timestamp() - posted_at[int(external_id)]) * 1000 for external_id, row_at in rows]
    last = max(row_at.timestamp() for _, row_at in rows)
    return {"leads": total, "offered_per_s": args.webhook_rate, "deliveries": len(bodies), "batch": args.batch,
            "leads_per_s": total / (last - min(posted_at.values())), "posted_per_s": total / (max(posted_at.values()) - min(posted_at.values())),
            "tail_s": last - max(posted_at.values()),
            "answer_median_ms": statistics.median(answers), "answer_p95_ms": percentile(answers, 0.95),
            "e2e_median_ms": statistics.median(end_to_end), "e2e_p95_ms": percentile(end_to_end, 0.95)}, last


# -- the run ---------------------------------------------------------------------------------------------------------
BENCH_BACKENDS: set[int] = set()  # PostgreSQL backends of the bench's own probe, watcher and reads


def note_backend() -> None:
    """Count this thread's PostgreSQL backend as the bench's (its CPU is not the product's)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        BENCH_BACKENDS.add(cursor.fetchone()[0])


class CpuMeter:
    """CPU seconds each role used while a part ran, sampled from /proc every 0.5 s (a process that exits between
    two samples loses at most its last half second): the worker's, web server's and sandbox's process groups and
    the PostgreSQL backends of this database (the writer processes are counted by run_services); the backends of
    the bench's own probe, watcher and reads apart (``bench_postgres``)."""

    def __init__(self, groups: dict[str, int], database: str):
        self.groups, self.database = groups, database.encode()
        self.seen: dict[int, tuple[str, float]] = {}
        self.done = threading.Event()

    def _scan(self) -> dict[int, tuple[str, float]]:
        found = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                role = next((name for name, pgid in self.groups.items() if int(fields[2]) == pgid), None)
                if role is None and (proc / "cmdline").read_bytes().startswith(b"postgres: ") and \
                        b" " + self.database + b" " in (proc / "cmdline").read_bytes():
                    role = "bench_postgres" if int(proc.name) in BENCH_BACKENDS else "postgres"
                if role:
                    found[int(proc.name)] = (role, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
            except (OSError, IndexError, ValueError):
                continue
        return found

    def __enter__(self) -> "CpuMeter":
        self.base = self._scan()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.done.wait(0.5):
            self.seen.update(self._scan())

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        self.seen.update(self._scan())
        self.seconds: dict[str, float] = {}
        for pid, (role, cpu) in self.seen.items():
            self.seconds[role] = self.seconds.get(role, 0.0) + cpu - self.base.get(pid, (role, 0.0))[1]


def prepare(account, token: str) -> None:
    from django.utils import timezone
    from django_q.models import Schedule

    from marketing.models import AdAccount, Campaign
    from meta_oauth.models import MetaConnection, MetaPage

    Schedule.objects.exclude(name="marketing.fold_roi_rollups").delete()  # no sync, no nightly rebuild mid-measure
    connection = MetaConnection.objects.get(account=account)
    connection.status, connection.meta_user_id = MetaConnection.Status.CONNECTED, META_USER
    connection.set_token(token)
    connection.save()
    if not MetaPage.objects.filter(meta_page_id=PAGE_ID).exists():
        page = MetaPage(account=account, meta_page_id=PAGE_ID, name="Bench page", subscribed_at=timezone.now())
        page.set_page_token("EAAbenchPageToken")
        page.save()
    ad_account = AdAccount.objects.filter(account=account, is_selected=True).first()
    Campaign.objects.get_or_create(account=account, meta_campaign_id=PROBE_CAMPAIGN,
                                   defaults={"ad_account": ad_account, "name": "Write probe", "status": "ACTIVE"})


def remove_written(account) -> None:
    """Delete the leads the run added (each delete marks its day) and wait for the fold."""
    from django.db.models import Q

    from crm_marketing.models import Lead

    written = Lead.objects.filter(Q(first_name__in=["Writer", "Probe"]) | Q(phone__startswith="+5493"), account=account)
    while ids := list(written.values_list("pk", flat=True)[:2000]):
        Lead.objects.filter(pk__in=ids).delete()
    wait_for_fold(account)
    vacuum_churned()


def vacuum_churned() -> None:
    """VACUUM ANALYZE what a run fills, updates and empties, outside the timed window: what autovacuum does on a
    production server (this machine's PostgreSQL runs with autovacuum off; a dozen runs' dead rows had raised
    the services part's PostgreSQL CPU per lead from 1.3 to 2.1 ms and its write p95 from 17 to 28 ms)."""
    from crm_marketing.models import EventDelivery, Lead, LeadTouch, OutboxEvent, WebhookEvent, WebhookHandlerOutcome
    from marketing.models import AccountDay, CampaignDay, CampaignToDate, RollupDirtyCell, RollupVersion

    vacuum(Lead, LeadTouch, OutboxEvent, EventDelivery, WebhookEvent, WebhookHandlerOutcome, RollupDirtyCell, RollupVersion,
           CampaignDay, AccountDay, CampaignToDate)


def wait_for_fold(account, seconds: float = 600) -> None:
    if not HAS_MARKS:
        return
    from marketing.models import RollupDirtyCell

    deadline = time.monotonic() + seconds
    while RollupDirtyCell.objects.filter(account=account).exists():
        if time.monotonic() > deadline:
            sys.exit("the worker did not fold the marks in 10 minutes")
        time.sleep(0.05)


def watch_fold(account, folded_at: list[float]) -> None:
    from django.db import connections

    note_backend()
    wait_for_fold(account)
    folded_at.append(time.time())
    connections.close_all()


def signed_in_client():
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    return client


def measure(part: str, account, client, args, tag: int, web_port: int, first_id: int, groups: dict[str, int]) -> dict:
    from django.conf import settings

    from marketing.stats.reports import today_for

    probe = Probe(account, signed_in_client(), tag)
    probing = threading.Thread(target=probe.run)
    note_backend()  # the reads after the last write
    load_before, bench_cpu = loadavg(), time.process_time()
    with CpuMeter(groups, settings.DATABASES["default"]["NAME"]) as cpu:
        probing.start()
        if part == "services":
            figures, last_write = run_services(account, args, tag)
        else:
            figures, last_write = run_webhooks(account, args, web_port, first_id)
        probe.stop.set()
        probing.join()  # its last lead is committed before the stats are read
        folded_at: list[float] = []
        watching = threading.Thread(target=watch_fold, args=(account, folded_at))
        watching.start()
        answers = read_stats(client, account)  # the reads right after the last write
        read_after = time.time() - last_write
        probe.watcher.join()
        watching.join()
    leads = figures.get("writes", figures.get("leads", 0)) + len(probe.commits)
    roles = {"writers": figures.pop("writers_cpu_s", 0.0), **cpu.seconds, "bench": time.process_time() - bench_cpu}
    figures["cpu_ms_per_lead"] = {role: seconds * 1000 / leads for role, seconds in roles.items()}
    differences = differences_from_truth(account, answers)
    more = differences_from_truth(account, read_stats(client, account))  # and once every mark is folded
    cells_exact = rollup_matches_truth(account, today_for(account))
    truth_differences = None
    if args.truth:  # bench/truth.py over the account with this run's leads still in it
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import truth as truth_check

        truth_differences = truth_check.check(client, list(truth_check.RANGES))
    figures.update({
        "probe_reads": len(probe.read_ms), "write_to_stats_p95_ms": percentile(probe.read_ms, 0.95),
        "write_to_stats_median_ms": statistics.median(probe.read_ms) if probe.read_ms else float("nan"),
        "write_to_rollup_p95_ms": percentile(probe.fold_ms, 0.95),
        "exact_at_once": not differences, "read_s_after_last_write": read_after,
        "folded_s_after_last_write": folded_at[0] - last_write, "exact_after_fold": not more and cells_exact,
        "truth_differences": truth_differences,
        "load_before": load_before, "load_after": loadavg()})
    for line in differences + more:
        print("   ", line)
    return figures


def print_figures(part: str, run: int, f: dict) -> None:
    if part == "services":
        head = (f"(a) run {run}: {f['writes']} leads offered at {f['offered_per_s']}/s, achieved {f['achieved_per_s']:.0f}/s; "
                f"write median {f['write_median_ms']:.1f} ms, p95 {f['write_p95_ms']:.1f} ms (start late p95 {f['start_late_p95_ms']:.0f} ms)")
    else:
        head = (f"(b) run {run}: {f['leads']} leadgen leads in {f['deliveries']} deliveries of {f['batch']}, offered at "
                f"{f['offered_per_s']}/s, achieved {f['leads_per_s']:.0f} leads/s end to end; answer p95 {f['answer_p95_ms']:.0f} ms; "
                f"post -> lead row median {f['e2e_median_ms']:.0f} ms, p95 {f['e2e_p95_ms']:.0f} ms; posted at {f['posted_per_s']:.0f}/s, "
                f"the last lead row {f['tail_s']:.1f} s after the last post")
    print(head)
    print(f"    write -> stats figure p95 {f['write_to_stats_p95_ms']:.0f} ms (median {f['write_to_stats_median_ms']:.0f}, "
          f"{f['probe_reads']} probes); write -> rollup row p95 {f['write_to_rollup_p95_ms']:.0f} ms; stats exact "
          f"{'yes' if f['exact_at_once'] else 'NO'} as read {f['read_s_after_last_write']:.1f} s after the last write; all marks folded "
          f"{f['folded_s_after_last_write']:.1f} s after it, then stats and today's cells exact {'yes' if f['exact_after_fold'] else 'NO'}; "
          f"load {f['load_before']} -> {f['load_after']}")
    if f["truth_differences"] is not None:
        print(f"    truth check (bench/truth.py, 30d, 90d, lifetime, after the load): {f['truth_differences']} differences")
    work = {role: ms for role, ms in f["cpu_ms_per_lead"].items() if role not in ("bench", "bench_postgres")}
    print("    CPU per lead: " + ", ".join(f"{role} {ms:.1f} ms" for role, ms in f["cpu_ms_per_lead"].items())
          + f"; without the bench's own probe and reads {sum(work.values()):.1f} ms, i.e. about "
          f"{2000 / sum(work.values()):.0f} leads/s on 2 idle cores", flush=True)


def main() -> None:
    global HAS_MARKS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--webhook-rate", type=float, default=1000)
    parser.add_argument("--webhook-seconds", type=float, default=5)
    parser.add_argument("--batch", type=int, default=20, help="leadgen changes per webhook delivery")
    parser.add_argument("--clients", type=int, default=8, help="concurrent webhook posters")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--q-workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parts", default="services,webhooks")
    parser.add_argument("--truth", action=argparse.BooleanOptionalAction, default=True,
                        help="run bench/truth.py's check after each part's load (default on)")
    parser.add_argument("--port", type=int, default=18761, help="the sandbox's; the web server takes the next")
    parser.add_argument("--app-root", default=str(ROOT), help="the checkout whose app to run (to compare with another branch)")
    parser.add_argument("--serve-sandbox", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sandbox-leads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sandbox-first-id", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    app_root = Path(args.app_root).resolve()
    sys.path.insert(0, str(app_root))
    if args.serve_sandbox:
        return serve_sandbox(args.serve_sandbox, args.sandbox_first_id, args.sandbox_leads)
    parts = [p for p in args.parts.split(",") if p]
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # stop the processes it started too
    first_leadgen_id = int(time.time()) * 100_000  # new Meta ids each invocation: stored events dedupe on them
    url = os.environ.get("DATABASE_URL", DEFAULT_URL)
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
    env = environment(url, args.port, redis_url, args.q_workers)
    env["PYTHONPATH"] = str(app_root)
    os.environ.update(env)
    import django
    import redis

    django.setup()
    from django.conf import settings

    import marketing.models
    from crm_marketing.models import Account

    HAS_MARKS = hasattr(marketing.models, "RollupDirtyCell")
    redis.Redis.from_url(redis_url).flushdb()
    webhook_leads = int(args.webhook_rate * args.webhook_seconds) * args.runs if "webhooks" in parts else 0
    here = Path(__file__).resolve()
    processes = [subprocess.Popen([sys.executable, str(here), "--app-root", str(app_root), "--serve-sandbox", str(args.port),
                                   "--sandbox-leads", str(webhook_leads), "--sandbox-first-id", str(first_leadgen_id)], cwd=app_root, env=env, stdout=subprocess.PIPE,
                                  text=True, start_new_session=True)]
    try:
        token = json.loads(processes[0].stdout.readline())["token"]
        account = Account.objects.get(slug="bench")
        prepare(account, token)
        worker_log = open(os.environ.get("BENCH_WORKER_LOG", "/tmp/bench-writes-worker.log"), "w")
        worker = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=app_root, env=env,
                                  stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True)
        processes.append(worker)
        web_port = args.port + 1
        if "webhooks" in parts:
            processes.append(subprocess.Popen([sys.executable, "-m", "gunicorn", "crm_marketing.wsgi:application", "--bind",
                                               f"127.0.0.1:{web_port}", "--workers", str(args.web_workers), "--no-control-socket"],
                                              cwd=app_root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                              start_new_session=True))
            wait_for_http(web_port, "/healthz")
        remove_written(account)  # what an interrupted earlier run left
        groups = {"worker": worker.pid, "sandbox": processes[0].pid, **({"web": processes[2].pid} if len(processes) > 2 else {})}
        settings.DEBUG = False
        client = signed_in_client()
        from crm_marketing.models import Lead

        print(f"machine: {host()}; data: {Lead.objects.filter(account=account).count():,} leads in the bench account; "
              f"app: {app_root} ({'marks + worker fold' if HAS_MARKS else 'rollup refreshed in the writer (no marks)'}); "
              f"worker: 1 qcluster x {args.q_workers}; load average before: {loadavg()}", flush=True)
        results: dict[str, list[dict]] = {part: [] for part in parts}
        for run in range(1, args.runs + 1):
            for part in parts:
                first_id = first_leadgen_id + (run - 1) * int(args.webhook_rate * args.webhook_seconds)
                figures = measure(part, account, client, args, run * 10 + len(results[part]), web_port, first_id, groups)
                results[part].append(figures)
                print_figures(part, run, figures)
                remove_written(account)
        print(f"\nmedians over {args.runs} run(s); load average after: {loadavg()}")
        for part, runs in results.items():
            keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            print(f"  {part}: " + ", ".join(f"{k} {statistics.median(r[k] for r in runs):.1f}" for k in keys))
            print(f"  {part}: CPU ms per lead " + ", ".join(
                f"{role} {statistics.median(r['cpu_ms_per_lead'].get(role, 0) for r in runs):.1f}" for role in runs[0]["cpu_ms_per_lead"]))
            print(f"  {part}: exact at once in {sum(r['exact_at_once'] for r in runs)} of {len(runs)} runs, "
                  f"after the fold in {sum(r['exact_after_fold'] for r in runs)} of {len(runs)}")
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                os.killpg(process.pid, 15)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)


if __name__ == "__main__":
    main()
