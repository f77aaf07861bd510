"""Load the production run mode: concurrent clients on the stats endpoints and the Meta webhook intake.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crm_bench .venv/bin/python bench/load.py \
        [--clients 16] [--seconds 60] [--runs 3] [--webhook-share 0.5] [--workers 3] [--threads 6] \
        [--qcluster-processes 1] [--lead-writes-per-minute 0] [--no-stats-cache]

Loopback only and bounded (--seconds per run). It needs the account bench/generate.py built (1 M
leads) and never drops it: it adds a WhatsApp channel, an inactive rule and its template to the
`bench` account (once), and per run as many `sent` MessageSends as the webhooks can move, which it
deletes with the run's webhook events afterwards.

It starts `manage.py run_production` (gunicorn + qcluster) on 127.0.0.1 with production settings:
DEBUG off, the Redis cache and django-q2 Redis broker on BENCH_REDIS_URL (default
redis://127.0.0.1:6379/5, flushed at the start of each run), TRUSTED_PROXY_COUNT=1 (each request
carries the X-Forwarded-Proto/-For a TLS proxy adds), the API and webhook rate limits raised (one
user and one address send everything here; the limits are not what is measured) and META_GRAPH_URL
on a closed loopback port, so nothing leaves the machine. Each run:

- `--clients` closed-loop clients (each its own keep-alive connection, spread over a few processes so
  the clients' own GIL does not time the server) for `--seconds`; each request is, at random,
  a signed WhatsApp status webhook (share `--webhook-share`, built as the sandbox sends them, one
  status each, moving one of the run's sends from sent to delivered; every tenth one is delivered
  again, as Meta retries) or one of the 12 stats reads as the `bench` user (token): stats,
  stats/roi, stats/timeseries and campaigns (page of 50 by -roi) for 30d, 90d and lifetime;
- optionally `--lead-writes-per-minute` Meta lead-ad leads created through POST /crm/leads (each moves
  the ROI rollup, so the stats cache sees real invalidations), deleted after the run;
- then it waits for the qcluster to process every stored webhook and checks that every status was
  applied exactly once: each targeted send is delivered, the template's delivered counter moved by
  exactly the number of distinct statuses, each status is stored once and redeliveries stored none.

Prints per run and as the median over runs: requests/s, p50/p95/p99 and errors per kind, the app's
CPU per request (gunicorn + qcluster processes, from /proc), the load average before and after.
Targets: zero errors; p95 < 200 ms for stats, < 50 ms for the webhook answer.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import free_port, host, loadavg, percentile, vacuum  # noqa: E402
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/crm_bench"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
RANGES = ("30d", "90d", "lifetime")
READS = {
    "stats": "/crm/marketing/stats?time_range={r}",
    "stats/roi": "/crm/marketing/stats/roi?time_range={r}",
    "stats/timeseries": "/crm/marketing/stats/timeseries?time_range={r}",
    "campaigns": "/crm/marketing/campaigns?time_range={r}&ordering=-roi&limit=50",
}
READ_KINDS = [(f"{name} {r}", template.format(r=r)) for name in READS for r in RANGES for template in [READS[name]]]
WEBHOOK = "webhook"
LEAD_WRITE = "lead write"
PHONE_NUMBER_ID = "1399001"  # the bench channel's phone number id (unique per account)
WABA_ID = "1299001"
RECIPIENT = "5491155550001"
TARGET_MS = {"stats": 200, WEBHOOK: 50}
APP_SECRET = "load-app-secret-" + secrets.token_hex(8)





# -- the clients (their own processes: no Django, stdlib only) ----------------------------------------------
class Connection:
    """One keep-alive HTTP/1.1 connection that reconnects when the server closes it (gunicorn's sync
    workers close after every answer)."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                content = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # a kept-alive connection the server had already closed: retry once on a fresh one
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close" or response.will_close:
                self.conn.close()
                self.conn = None
            return response.status, content
        raise AssertionError("unreachable")


def run_clients(spec: dict, results: multiprocessing.Queue) -> None:
    """One client process: ``spec["clients"]`` threads, each a closed loop until ``spec["end_at"]``."""
    from crm_marketing.sandbox.webhooks import encode, sign, status_event, statuses_payload

    records: list[tuple[str, float, int, str]] = []  # (kind, latency ms, status, error text)
    used_sends: list[int] = []
    lock = threading.Lock()

    def client(number: int, sends: list[tuple[int, str]]) -> None:
        rng = random.Random(spec["seed"] * 1000 + number)
        conn = Connection(spec["port"])
        base = {"X-Forwarded-Proto": "https", "X-Forwarded-For": f"10.0.{number // 250}.{number % 250 + 1}"}
        read_headers = {**base, "Authorization": f"Token {spec['token']}", "Accept": "application/json"}
        redelivery: bytes | None = None
        mine: list[tuple[str, float, int, str]] = []
        used: list[int] = []
        next_send = 0
        time.sleep(max(0.0, spec["start_at"] - time.time()))
        stop_file = spec["stop_file"]
        while time.time() < spec["end_at"] and not (stop_file and os.path.exists(stop_file)):
            if rng.random() < spec["webhook_share"] and (next_send < len(sends) or redelivery):
                if redelivery is not None:  # every tenth status is delivered twice, as Meta retries
                    body, redelivery = redelivery, None
                else:
                    send_id, wamid = sends[next_send]
                    next_send += 1
                    body = encode(statuses_payload(status_event(wamid, "delivered", RECIPIENT, str(send_id)),
                                                   waba_id=WABA_ID, phone_number_id=PHONE_NUMBER_ID))
                    used.append(send_id)
                    if len(used) % 10 == 0:
                        redelivery = body
                kind, method, path, payload = WEBHOOK, "POST", "/webhooks/meta", body
                headers = {**base, "Content-Type": "application/json", "X-Hub-Signature-256": sign(body, spec["app_secret"])}
            else:
                kind, path = spec["reads"][rng.randrange(len(spec["reads"]))]
                method, payload, headers = "GET", None, read_headers
            started = time.perf_counter()
            try:
                status, content = conn.request(method, path, payload, headers)
                error = "" if status == 200 else content[:200].decode(errors="replace")
            except Exception as exc:  # noqa: BLE001 - a failed request is a figure, not a crash
                status, error = 0, f"{type(exc).__name__}: {exc}"
                conn = Connection(spec["port"])
            mine.append((kind, (time.perf_counter() - started) * 1000, status, error))
        with lock:
            records.extend(mine)
            used_sends.extend(used)

    threads = [threading.Thread(target=client, args=(number, sends))
               for number, sends in zip(spec["client_numbers"], spec["sends"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put({"records": records, "used_sends": used_sends})


# -- the server --------------------------------------------------------------------------------------------
def server_environment(args: argparse.Namespace, url: str, static_root: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "Q_", "LOG_", "WEB_", "GUNICORN_"))}
    env = {**clean, "DATABASE_URL": url, "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50),
           "META_TOKEN_KEYS": Fernet.generate_key().decode(), "META_APP_SECRET": APP_SECRET,
           "META_GRAPH_URL": f"http://127.0.0.1:{free_port()}",  # closed: a scheduled sync fails at once, on loopback
           "ALLOWED_HOSTS": "127.0.0.1", "TRUSTED_PROXY_COUNT": "1", "STATIC_ROOT": static_root,
           "CACHE_URL": REDIS_URL, "Q_BROKER_URL": REDIS_URL, "Q_WORKERS": str(args.q_workers),
           "API_RATE_LIMIT": "1000000/m", "WEBHOOK_RATE_LIMIT": "1000000/m", "LOG_LEVEL": "INFO",
           "CONN_MAX_AGE": "3600",  # the same backends all run long, so their CPU can be read from /proc
           "STATS_CACHE_SECONDS": "0" if args.no_stats_cache else "600", "QCLUSTER_NICE": str(args.qcluster_nice),
           "PYTHONUNBUFFERED": "1"}
    return env


def start_server(args: argparse.Namespace, env: dict[str, str], port: int, log) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "manage.py", "run_production", "--bind", f"127.0.0.1:{port}",
                               "--workers", str(args.workers), "--threads", str(args.threads),
                               "--qcluster-processes", str(args.qcluster_processes)],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return server
        except OSError:
            pass
        if server.poll() is not None:
            log.seek(0)
            sys.exit("run_production did not start:\n" + log.read().decode()[-3000:])
        time.sleep(0.3)
    stop_server(server)
    sys.exit("run_production did not answer /healthz within 120 s")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(server.pid, signal.SIGKILL)  # whatever a child left in the supervisor's group
    except ProcessLookupError:
        pass


def app_cpu_seconds(supervisor: int) -> dict[str, float]:
    """CPU seconds so far of the web (gunicorn) and the task (qcluster) process trees under run_production."""
    cpu = {"web": 0.0, "tasks": 0.0}
    for task in Path(f"/proc/{supervisor}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            cpu["web" if b"gunicorn" in command else "tasks"] += tree_cpu_seconds(int(child))
    return cpu


def postgres_cpu_seconds(database: str) -> float:
    """CPU seconds so far of the PostgreSQL backends connected to ``database`` (the server's persistent
    connections; other databases' backends, e.g. other jobs on the machine, are not counted)."""
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                                               [database])]
    return sum(tree_cpu_seconds(pid) for pid in pids)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid``, every live descendant and the children they reaped (django-q2
    recycles its workers) (Linux /proc)."""
    total, frontier = 0.0, [pid]
    while frontier:
        current = frontier.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                frontier += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


# -- the data ------------------------------------------------------------------------------------------------
def prepare_account():
    """The bench account, its user's API token, and the WhatsApp channel, template and inactive rule the
    status webhooks land on (created once)."""
    from rest_framework.authtoken.models import Token

    from automation.models import AutomationRule, MessageTemplate, RuleStep
    from crm_marketing.models import Account
    from meta_oauth.models import WhatsAppChannel

    account = Account.objects.filter(slug="bench").first()
    if account is None:
        sys.exit("No `bench` account in this database: build it first with bench/generate.py.")
    from django.contrib.auth import get_user_model

    token, _ = Token.objects.get_or_create(user=get_user_model().objects.get(username="bench"))
    WhatsAppChannel.objects.get_or_create(account=account, meta_phone_number_id=PHONE_NUMBER_ID,
                                          defaults={"meta_waba_id": WABA_ID, "is_selected": True})
    template, _ = MessageTemplate.objects.get_or_create(
        account=account, meta_template_id="1199001",
        defaults={"meta_waba_id": WABA_ID, "name": "load_bench", "language": "es", "status": "APPROVED",
                  "components": [{"type": "BODY", "text": "Hola {{1}}"}]})
    rule, created = AutomationRule.objects.get_or_create(account=account, name="Load bench (inactive)",
                                                         defaults={"trigger_type": "lead_created", "is_active": False})
    if created:
        RuleStep.objects.create(account=account, rule=rule, template=template, variables={"1": "lead.first_name"})
    return account, token.key, template, rule


def create_sends(account, template, rule, run_tag: str, count: int) -> list[tuple[int, str]]:
    """``count`` sends already `sent` (as if the engine had posted them), each with its own wamid."""
    from django.utils import timezone

    from automation.models import MessageSend
    from crm_marketing.models import Lead

    lead_id = Lead.objects.filter(account=account).order_by("pk").values_list("pk", flat=True).first()
    step = rule.steps.get()
    now = timezone.now()
    MessageSend.objects.bulk_create([
        MessageSend(account=account, rule=rule, step=step, lead_id=lead_id, template=template, trigger_type="lead_created",
                    trigger_key=f"load:{run_tag}:{i}", rule_name=rule.name, template_name=template.name, status="sent",
                    meta_message_id=f"wamid.LOAD{run_tag}N{i}", due_at=now, created_at=now, sent_at=now)
        for i in range(count)], batch_size=5000)
    return list(MessageSend.objects.filter(trigger_key__startswith=f"load:{run_tag}:")
                .order_by("pk").values_list("pk", "meta_message_id"))


def wait_processed(run_tag: str, timeout: float) -> tuple[int, float]:
    """Wait until the qcluster handled every stored webhook of the run; (still pending, seconds waited)."""
    from crm_marketing.models import WebhookEvent

    started = time.monotonic()
    pending = WebhookEvent.objects.filter(dedupe_key__startswith=f"status:wamid.LOAD{run_tag}N", status__in=["received", "processing"])
    while True:
        left = pending.count()
        if not left or time.monotonic() - started > timeout:
            return left, time.monotonic() - started
        time.sleep(1)


def template_delivered(template) -> int:
    """The template's delivered figure as the hub shows it (counted from its sends)."""
    from automation.services.counters import counters_by

    return counters_by("template_id", [template.pk])[template.pk]["delivered"]


def check_applied(run_tag: str, used: list[int], template, delivered_before: int) -> tuple[bool, str]:
    """Every status applied exactly once: the targeted sends delivered, the others untouched, the
    template's counter moved by the number of distinct statuses, one stored event per status."""
    from django.db.models import Count

    from automation.models import MessageSend
    from crm_marketing.models import WebhookEvent

    sends = MessageSend.objects.filter(trigger_key__startswith=f"load:{run_tag}:")
    by_status = dict(sends.values_list("status").annotate(n=Count("id")))
    delivered = set(sends.filter(status="delivered").values_list("pk", flat=True))
    counted = template_delivered(template) - delivered_before
    events = WebhookEvent.objects.filter(dedupe_key__startswith=f"status:wamid.LOAD{run_tag}N")
    stored, processed = events.count(), events.filter(status="processed").count()
    ok = delivered == set(used) and counted == len(used) == stored == processed
    return ok, (f"{len(used)} statuses sent: {len(delivered)} sends delivered (states {by_status}), template counter "
                f"+{counted}, {stored} events stored, {processed} processed")


def clean_run(run_tag: str, lead_ids: list[int]) -> None:
    from automation.models import MessageSend
    from crm_marketing.models import Lead, WebhookEvent

    WebhookEvent.objects.filter(dedupe_key__startswith=f"status:wamid.LOAD{run_tag}N").delete()
    MessageSend.objects.filter(trigger_key__startswith=f"load:{run_tag}:").delete()
    for lead in Lead.objects.filter(pk__in=lead_ids):
        lead.delete()  # one by one: the rollup signals put the cells back


def vacuum_churned() -> None:
    """VACUUM ANALYZE the tables a run fills and empties, outside the timed window: what autovacuum does on a
    production server. This machine's PostgreSQL runs with autovacuum off, and after a dozen runs 1.8 M dead
    sends had doubled PostgreSQL's CPU per request (webhook p95 66 -> 88 ms) until they were vacuumed."""
    from automation.models import MessageSend
    from crm_marketing.event_models import EventDelivery, OutboxEvent
    from crm_marketing.models import Lead
    from crm_marketing.webhook_models import WebhookEvent, WebhookHandlerOutcome

    vacuum(MessageSend, WebhookEvent, WebhookHandlerOutcome, OutboxEvent, EventDelivery, Lead)


def autovacuum_state() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        return cursor.fetchone()[0]


def lead_writer(port: int, token: str, campaign_id: str, per_minute: float, end_at: float, out: list, ids: list,
                stop_file: str = "") -> None:
    """Create Meta lead-ad leads through the API at a steady pace (each one moves the ROI rollup)."""
    conn = Connection(port)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json", "X-Forwarded-Proto": "https",
               "X-Forwarded-For": "10.9.9.9"}
    interval, n = 60.0 / per_minute, 0
    next_at = time.time()
    while next_at < end_at and not (stop_file and os.path.exists(stop_file)):
        time.sleep(max(0.0, next_at - time.time()))
        body = json.dumps({"first_name": f"Load {n}", "email": f"load-{int(end_at)}-{n}@example.com", "lead_source": "meta_lead_ads", "meta_campaign_id": campaign_id}).encode()
        started = time.perf_counter()
        try:
            status, content = conn.request("POST", "/crm/leads", body, headers)
            error = "" if status == 201 else content[:200].decode(errors="replace")
            if status == 201:
                ids.append(json.loads(content)["data"]["id"])
        except Exception as exc:  # noqa: BLE001
            status, error = 0, f"{type(exc).__name__}: {exc}"
            conn = Connection(port)
        out.append((LEAD_WRITE, (time.perf_counter() - started) * 1000, 201 if status == 201 else status, error))
        n += 1
        next_at += interval


# -- one run -------------------------------------------------------------------------------------------------
def one_run(args, run: int, port: int, server: subprocess.Popen, account, token: str, template, rule) -> dict:
    import redis
    from django.db import connections

    from marketing.models import Campaign

    run_tag = f"{int(time.time())}R{run}"
    pool = int(args.seconds * args.send_pool_per_second)
    sends = create_sends(account, template, rule, run_tag, pool)
    delivered_before = template_delivered(template)
    campaign_id = Campaign.objects.filter(account=account).order_by("meta_campaign_id").values_list("meta_campaign_id", flat=True).first()
    connections.close_all()
    processes = max(1, min(args.client_processes, args.clients))
    numbers = list(range(args.clients))
    start_at = time.time() + 2
    end_at = start_at + args.seconds
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    specs = []
    for p in range(processes):
        mine = numbers[p::processes]
        specs.append({"port": port, "token": token, "app_secret": APP_SECRET, "webhook_share": args.webhook_share,
                      "reads": READ_KINDS, "start_at": start_at, "end_at": end_at, "stop_file": args.stop_file, "seed": run * 100 + p,
                      "client_numbers": mine, "sends": [sends[c::args.clients] for c in mine]})
    load_before = loadavg()
    database = urlparse(os.environ["DATABASE_URL"]).path.lstrip("/")
    cpu_before = app_cpu_seconds(server.pid) | {"db": postgres_cpu_seconds(database)}
    workers = [context.Process(target=run_clients, args=(spec, results)) for spec in specs]
    for worker in workers:
        worker.start()
    print(f"run {run + 1}: {args.clients} clients start at {time.strftime('%H:%M:%S', time.gmtime(start_at))} UTC", flush=True)
    writes: list = []
    lead_ids: list[int] = []
    writer = None
    if args.lead_writes_per_minute > 0:
        writer = threading.Thread(target=lead_writer, args=(port, token, campaign_id, args.lead_writes_per_minute,
                                                             end_at, writes, lead_ids, args.stop_file))
        writer.start()
    outputs = [results.get(timeout=args.seconds + 300) for _ in workers]
    seconds = min(end_at, time.time()) - start_at  # less than --seconds when the stop file ended the run
    for worker in workers:
        worker.join()
    if writer:
        writer.join()
    cpu_after = app_cpu_seconds(server.pid) | {"db": postgres_cpu_seconds(database)}
    load_after = loadavg()
    records = [r for out in outputs for r in out["records"]] + writes
    used = sorted(s for out in outputs for s in out["used_sends"])
    pending, waited = wait_processed(run_tag, timeout=300)
    tasks_drained = app_cpu_seconds(server.pid)["tasks"]  # a niced qcluster catches up after the run
    applied, applied_line = check_applied(run_tag, used, template, delivered_before)
    queue_left = redis.Redis.from_url(REDIS_URL).llen("django_q:crm_marketing:q")
    clean_run(run_tag, lead_ids)
    vacuum_churned()
    return {"records": records, "seconds": seconds, "load_before": load_before, "load_after": load_after,
            "web_cpu_ms": (cpu_after["web"] - cpu_before["web"]) * 1000 / max(1, len(records)),
            "task_cpu_ms": (tasks_drained - cpu_before["tasks"]) * 1000 / max(1, sum(r[0] == WEBHOOK for r in records)),
            "db_cpu_ms": (cpu_after["db"] - cpu_before["db"]) * 1000 / max(1, len(records)),
            "applied": applied, "applied_line": applied_line, "pending": pending, "drain_seconds": waited,
            "queue_left": queue_left}


def warm_up(port: int, token: str, concurrency: int) -> None:
    """Each read once (the first fills the stats cache when it is on), then a few rounds of every read at
    the server's concurrency, so every gunicorn worker has loaded its views and opened its connections."""
    headers = {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"}
    for _, path in READ_KINDS:
        status, content = Connection(port).request("GET", path, None, headers)
        if status != 200:
            sys.exit(f"warm-up {path} answered {status}: {content[:300]!r}")

    def read_all(_):
        conn = Connection(port)
        for _, path in READ_KINDS:
            conn.request("GET", path, None, headers)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(read_all, range(2 * concurrency)))


def summarize(records: list[tuple[str, float, int, str]], seconds: float) -> dict[str, dict]:
    groups: dict[str, list] = defaultdict(list)
    for record in records:
        groups[record[0]].append(record)
        if record[0] not in (WEBHOOK, LEAD_WRITE):
            groups["stats (all reads)"].append(record)
    summary = {}
    for kind, rows in groups.items():
        latencies = [r[1] for r in rows]
        errors = [r for r in rows if r[2] not in (200, 201)]
        summary[kind] = {"n": len(rows), "rps": len(rows) / seconds, "p50": percentile(latencies, 0.50),
                         "p95": percentile(latencies, 0.95), "p99": percentile(latencies, 0.99), "errors": len(errors),
                         "error_samples": sorted({f"{r[2]} {r[3][:120]}" for r in errors})[:3]}
    return summary


def kind_order(kind: str) -> tuple:
    names = [k for k, _ in READ_KINDS]
    return (0, names.index(kind)) if kind in names else ((1, 0) if kind == "stats (all reads)" else (2, kind))


def print_table(summary: dict[str, dict]) -> None:
    print(f"  {'kind':<26}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for kind in sorted(summary, key=kind_order):
        s = summary[kind]
        print(f"  {kind:<26}{s['n']:>9}{s['rps']:>8.1f}{s['p50']:>9.1f}{s['p95']:>9.1f}{s['p99']:>9.1f}{s['errors']:>8}")
        for sample in s.get("error_samples", []):
            print(f"      e.g. {sample}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--webhook-share", type=float, default=0.5, help="share of the requests that are webhooks")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument("--threads", type=int, default=6, help="threads per gunicorn worker (WEB_THREADS; >1: gthread)")
    parser.add_argument("--qcluster-processes", type=int, default=1)
    parser.add_argument("--q-workers", type=int, default=2, help="django-q2 workers per qcluster")
    parser.add_argument("--qcluster-nice", type=int, default=0, help="QCLUSTER_NICE: niceness of the qcluster processes (web first)")
    parser.add_argument("--lead-writes-per-minute", type=float, default=0, help="Meta leads created during each run")
    parser.add_argument("--no-stats-cache", action="store_true", help="run the server with STATS_CACHE_SECONDS=0")
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--send-pool-per-second", type=float, default=400, help="sends created per run and second")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stop-file", default="", help="the clients stop early once this file exists (bench/stats.py --with-load)")
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", DEFAULT_URL)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_marketing.settings")
    import django

    django.setup()
    import redis
    from django.db import connections
    from django_q.models import Schedule

    from crm_marketing.models import Lead
    from marketing.models import CampaignDay

    account, token, template, rule = prepare_account()
    leads = Lead.objects.filter(account=account).count()
    cells = CampaignDay.objects.filter(account=account).count()
    if cells:  # generate.py already built the rollup: the one-off rebuild queued by the migration is redundant
        Schedule.objects.filter(func="marketing.tasks.rebuild_all_roi_rollups", schedule_type=Schedule.ONCE).delete()
    vacuum_churned()  # what earlier runs left, on a server without autovacuum
    connections.close_all()
    static_root = tempfile.mkdtemp(prefix="load-static-")
    env = server_environment(args, url, static_root)
    port = args.port or free_port()
    mode = f"gunicorn {args.workers} worker(s)" + (f" x {args.threads} threads (gthread)" if args.threads > 1 else " (sync)")
    print(f"machine: {platform.node()}, {host()}, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"Python {platform.python_version()}; database {urlparse(url).path.lstrip('/')}: account bench with {leads:,} leads, "
          f"{cells:,} rollup rows; PostgreSQL autovacuum {autovacuum_state()} (the tables a run churns are vacuumed after it)")
    print(f"server: run_production, {mode}, {args.qcluster_processes} qcluster x {args.q_workers} workers, Redis {REDIS_URL}, "
          f"stats cache {'off' if args.no_stats_cache else 'on'}; clients: {args.clients} for {args.seconds:.0f} s, "
          f"webhook share {args.webhook_share:.0%}, lead writes {args.lead_writes_per_minute:g}/min")
    summaries, results = [], []
    for run in range(args.runs):
        redis.Redis.from_url(REDIS_URL).flushdb()  # a cold cache and an empty queue per run
        log = tempfile.TemporaryFile()
        server = start_server(args, env, port, log)
        try:
            warm_up(port, token, args.workers * args.threads)
            result = one_run(args, run, port, server, account, token, template, rule)
        finally:
            stop_server(server)
        summary = summarize(result["records"], result["seconds"])
        summaries.append(summary)
        results.append(result)
        print(f"\nrun {run + 1}: load average {result['load_before']} -> {result['load_after']}; CPU: gunicorn "
              f"{result['web_cpu_ms']:.1f} ms per request, qcluster {result['task_cpu_ms']:.1f} ms per webhook (until "
              f"drained), PostgreSQL {result['db_cpu_ms']:.1f} ms per request (all its backends of this database)")
        print_table(summary)
        print(f"  webhooks: {'every status applied exactly once' if result['applied'] else 'MISMATCH'}: {result['applied_line']} "
              f"(queue drained {result['drain_seconds']:.0f} s after the run; {result['pending']} pending, "
              f"{result['queue_left']} tasks left in Redis)")
        log.seek(0)
        errors = [line for line in log.read().decode(errors="replace").splitlines() if '"level": "ERROR"' in line]
        if errors:
            print(f"  server log: {len(errors)} ERROR line(s), e.g. {errors[0][:300]}")
    kinds = sorted({k for s in summaries for k in s}, key=kind_order)
    median = {k: {m: statistics.median(s[k][m] for s in summaries if k in s) for m in ("n", "rps", "p50", "p95", "p99")}
              | {"errors": sum(s[k]["errors"] for s in summaries if k in s)} for k in kinds}
    print(f"\nmedian over {args.runs} run(s) of {statistics.median(r['seconds'] for r in results):.0f} s (errors: total over the runs):")
    print_table(median)
    reads, hooks = median.get("stats (all reads)"), median.get(WEBHOOK)
    verdicts = []
    if reads:
        verdicts.append(f"stats p95 {reads['p95']:.0f} ms ({'ok' if reads['p95'] < TARGET_MS['stats'] else 'MISSED'}: < {TARGET_MS['stats']})")
    if hooks:
        verdicts.append(f"webhook p95 {hooks['p95']:.0f} ms ({'ok' if hooks['p95'] < TARGET_MS[WEBHOOK] else 'MISSED'}: < {TARGET_MS[WEBHOOK]})")
    total_errors = sum(m["errors"] for m in median.values() if m is not median.get("stats (all reads)"))
    verdicts.append(f"errors {total_errors} ({'ok' if not total_errors else 'MISSED'}: 0)")
    verdicts.append("statuses applied exactly once in every run" if all(r["applied"] for r in results) else "statuses: MISMATCH")
    print("; ".join(verdicts))
    print(f"CPU, median: gunicorn {statistics.median(r['web_cpu_ms'] for r in results):.1f} ms per request, qcluster "
          f"{statistics.median(r['task_cpu_ms'] for r in results):.1f} ms per webhook, PostgreSQL "
          f"{statistics.median(r['db_cpu_ms'] for r in results):.1f} ms per request; load average after: {loadavg()}")


if __name__ == "__main__":
    main()
