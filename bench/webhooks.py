"""Time the Meta webhook intake against a real running server on PostgreSQL.

    .venv/bin/python bench/webhooks.py [--requests 2000] [--clients 8] [--runs 3] [--batch 500]
    .venv/bin/python bench/webhooks.py --production [--workers 3 --threads 6] [--qcluster-nice 10] ...

The database named in DATABASE_URL (default crm_events_bench; its name must contain "bench") is
DROPPED, recreated and migrated. The script then starts `manage.py runserver --noreload` on
127.0.0.1 with production settings (DEBUG off, Redis cache for the rate limits, the ORM broker), or
with ``--production`` the production run mode (`manage.py run_production`: gunicorn ``--workers`` x
``--threads`` and one qcluster, the Redis cache and broker on BENCH_REDIS_URL, default
redis://127.0.0.1:6379/5, flushed first; requests carry the X-Forwarded-Proto a TLS proxy adds) and:

(a) fires `--requests` signed status webhooks (one status each, built with the sandbox's
    `statuses_payload`) from `--clients` concurrent clients, plus a redelivery of every tenth one
    (Meta retries), and prints requests/s and the median / p95 of the 200 answer; then checks that
    every status is stored exactly once and drain tasks were queued (one while none waits to start);
(b) posts one delivery of `--batch` status changes and prints the time to the 200 answer, checking
    that the changes were stored and one drain task was queued for them.

With ``--production`` every status lands on a real automation send (a channel, template and inactive
rule are seeded, and the sends exist as `sent` / `unknown` before each part): after each part the
script waits for the qcluster to process the stored events and checks that every status was applied
exactly once (each send moved once, the template's counter moved by exactly the number of statuses),
instead of counting queued task rows (the Redis broker's tasks are consumed as they come).

Each part runs `--runs` times with fresh Meta ids; the figures printed are medians over the runs.
Targets: p95 under 50 ms for (a), under 200 ms for (b).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import host, percentile  # noqa: E402
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/crm_events_bench"
APP_SECRET = "bench-app-secret-" + secrets.token_hex(8)
TARGET_P95_MS, TARGET_BATCH_MS = 50, 200



def recreate_database(url: str) -> None:
    import psycopg

    name = urlparse(url).path.lstrip("/")
    if "bench" not in name:
        sys.exit(f"Refusing to drop {name!r}: the benchmark database name must contain 'bench'.")
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def server_environment(url: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    return {**os.environ, "DATABASE_URL": url, "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50),
            "META_TOKEN_KEYS": Fernet.generate_key().decode(), "META_APP_SECRET": APP_SECRET,
            "CACHE_URL": os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/9"),
            "WEBHOOK_RATE_LIMIT": "1000000/m", "LOG_LEVEL": "WARNING", "Q_SYNC": "false",
            "SECURE_SSL_REDIRECT": "false"}  # TLS ends at the proxy in production; this is plain loopback


def production_environment(env: dict[str, str], redis_url: str) -> dict[str, str]:
    """run_production's settings: check --deploy must pass, so TLS is the proxy's (X-Forwarded-Proto)."""
    production = {k: v for k, v in env.items() if k != "SECURE_SSL_REDIRECT"}
    return {**production, "CACHE_URL": redis_url, "Q_BROKER_URL": redis_url, "ALLOWED_HOSTS": "127.0.0.1",
            "TRUSTED_PROXY_COUNT": "1", "STATIC_ROOT": tempfile.mkdtemp(prefix="webhooks-static-"), "Q_WORKERS": "2",
            "META_GRAPH_URL": "http://127.0.0.1:9", "PYTHONUNBUFFERED": "1"}


def start_server(env: dict[str, str], port: int) -> subprocess.Popen:
    log = tempfile.TemporaryFile()  # runserver logs every request: a pipe nobody reads would fill and stall it
    server = subprocess.Popen([sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=log)
    import requests

    for _ in range(100):
        try:
            requests.get(f"http://127.0.0.1:{port}/webhooks/meta", timeout=1, allow_redirects=False).raise_for_status
            return server
        except requests.ConnectionError:
            if server.poll() is not None:
                log.seek(0)
                sys.exit("the server did not start:\n" + log.read().decode())
            time.sleep(0.2)
    server.terminate()
    sys.exit("the server did not answer within 20 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def signed(payload: dict) -> tuple[bytes, dict[str, str]]:
    from crm_marketing.sandbox.webhooks import encode, sign

    body = encode(payload)
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, APP_SECRET)}


def fire(port: int, bodies: list[tuple[bytes, dict[str, str]]], clients: int) -> tuple[list[float], list[dict], float]:
    """POST every body from ``clients`` threads (one keep-alive connection each, plain http.client so
    the clients cost little CPU); returns each answer's latency in ms, the answers' data and the wall
    time in seconds."""
    local = threading.local()
    lock = threading.Lock()
    latencies: list[float] = []
    answers: list[dict] = []

    def post(item: tuple[bytes, dict[str, str]]) -> None:
        if getattr(local, "conn", None) is None:
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        started = time.perf_counter()
        local.conn.request("POST", "/webhooks/meta", body=item[0], headers={**item[1], "X-Forwarded-Proto": "https"})
        response = local.conn.getresponse()
        content = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise SystemExit(f"answer {response.status}: {content[:300]!r}")
        if response.getheader("Connection", "").lower() == "close":
            local.conn.close()
            local.conn = None
        with lock:
            latencies.append(elapsed)
            answers.append(json.loads(content)["data"])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(post, bodies))
    return latencies, answers, time.perf_counter() - started


def seed_sends(prefix: str, count: int, status: str) -> list[int]:
    """``count`` automation sends of the seeded rule, each with the wamid ``{prefix}{i}``."""
    from django.utils import timezone

    from automation.models import AutomationRule, MessageSend, MessageTemplate, RuleStep
    from crm_marketing.models import Account, Lead
    from crm_marketing.sandbox.webhooks import PHONE_NUMBER_ID, WABA_ID
    from meta_oauth.models import WhatsAppChannel

    account, created = Account.objects.get_or_create(slug="hooks", defaults={"name": "Hooks", "currency": "USD", "timezone": "UTC"})
    if created:
        WhatsAppChannel.objects.create(account=account, meta_waba_id=WABA_ID, meta_phone_number_id=PHONE_NUMBER_ID)
        template = MessageTemplate.objects.create(account=account, meta_template_id="1100001", meta_waba_id=WABA_ID, name="bench",
                                                  language="es", status="APPROVED", components=[{"type": "BODY", "text": "Hola {{1}}"}])
        rule = AutomationRule.objects.create(account=account, name="Bench (inactive)", trigger_type="lead_created", is_active=False)
        RuleStep.objects.create(account=account, rule=rule, template=template, variables={"1": "lead.first_name"})
        Lead.objects.create(account=account, first_name="Bench", phone="+5491155550001")
    rule = AutomationRule.objects.get(account=account)
    step, lead = rule.steps.get(), Lead.objects.get(account=account)
    now = timezone.now()
    MessageSend.objects.bulk_create([
        MessageSend(account=account, rule=rule, step=step, lead=lead, template=step.template, trigger_type="lead_created",
                    trigger_key=f"{prefix}{i}", rule_name=rule.name, template_name="bench", status=status,
                    meta_message_id=f"{prefix}{i}", due_at=now, created_at=now, sent_at=now if status == "sent" else None)
        for i in range(count)], batch_size=5000)
    return list(MessageSend.objects.filter(trigger_key__startswith=prefix).values_list("pk", flat=True))


def applied_once(prefix: str, count: int, status: str, counter: str, counted_before: int, timeout: float = 300) -> tuple[bool, str]:
    """Wait for the qcluster to process the statuses of ``prefix``; True when each of the ``count`` sends
    reached ``status`` and the template's ``counter`` moved by exactly ``count``."""
    from automation.models import MessageSend
    from crm_marketing.models import WebhookEvent

    events = WebhookEvent.objects.filter(dedupe_key__startswith=f"status:{prefix}")
    started = time.monotonic()
    while events.filter(status__in=["received", "processing"]).exists() and time.monotonic() - started < timeout:
        time.sleep(0.5)
    moved = MessageSend.objects.filter(trigger_key__startswith=prefix, status=status).count()
    counted = template_counter(counter) - counted_before
    processed = events.filter(status="processed").count()
    ok = moved == counted == processed == events.count() == count
    return ok, (f"{processed} events processed {time.monotonic() - started:.1f} s after the last answer, {moved} sends {status}, "
                f"template {counter} +{counted}")


def template_counter(counter: str) -> int:
    """The template's figure as the hub shows it, counted from its sends (``delivered_count`` -> delivered)."""
    from automation.models import MessageTemplate
    from automation.services.counters import counters_by

    template = MessageTemplate.objects.filter(account__slug="hooks").first()
    return counters_by("template_id", [template.pk])[template.pk][counter.removesuffix("_count")] if template else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--production", action="store_true", help="run_production (gunicorn + qcluster, Redis broker)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (--production)")
    parser.add_argument("--threads", type=int, default=6, help="threads per gunicorn worker (--production)")
    parser.add_argument("--qcluster-nice", type=int, default=0, help="QCLUSTER_NICE (--production)")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", DEFAULT_URL)
    recreate_database(url)
    env = server_environment(url)
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
    if args.production:
        env = production_environment(env, redis_url) | {"QCLUSTER_NICE": str(args.qcluster_nice)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "SECRET_KEY", "META_TOKEN_KEYS", "META_APP_SECRET", "CACHE_URL", "DEBUG")})
    if args.production:
        os.environ["Q_BROKER_URL"] = redis_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_marketing.settings")
    import django

    django.setup()
    from django.db import connections
    from django_q.models import OrmQ

    from crm_marketing.models import WebhookEvent
    from crm_marketing.sandbox.webhooks import status_event, statuses_payload

    if args.production:
        import redis

        from bench.load import app_cpu_seconds, start_server as start_production, stop_server

        redis.Redis.from_url(redis_url).flushdb()
        seed_sends("wamid.WARM", 50, "sent")
        connections.close_all()
        log = tempfile.TemporaryFile()
        server = start_production(argparse.Namespace(workers=args.workers, threads=args.threads, qcluster_processes=1),
                                  env, args.port, log)
        web_cpu = lambda: app_cpu_seconds(server.pid)["web"]  # noqa: E731 - gunicorn master and workers
        mode = (f"run_production: gunicorn {args.workers} worker(s) x {args.threads} thread(s), 1 qcluster x 2 workers"
                f"{f' at nice {args.qcluster_nice}' if args.qcluster_nice else ''}, Redis cache and broker")
    else:
        server, mode = start_server(env, args.port), "runserver --noreload (threaded), ORM broker"
        web_cpu = lambda: cpu_seconds(server.pid)  # noqa: E731
    print(f"machine: {platform.node()}, {host()}, Python {platform.python_version()}, "
          f"PostgreSQL database {urlparse(url).path.lstrip('/')}, {mode}, DEBUG off")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    verdicts: list[bool] = []
    try:
        fire(args.port, [signed(statuses_payload(status_event(f"wamid.WARM{i}", "delivered", "5491155550001"))) for i in range(50)], args.clients)
        if args.production:  # the warm-up's statuses are applied before the counters are read
            applied_once("wamid.WARM", 50, "delivered", "delivered_count", 0)
        rates, medians, p95s, batch_ms, server_cpu_ms, batch_cpu_ms = [], [], [], [], [], []
        for run in range(args.runs):
            # (a) single-status deliveries, with every tenth one delivered again (Meta retries)
            prefix = f"wamid.R{run}N"
            keys = [f"{prefix}{i}" for i in range(args.requests)]
            if args.production:
                seed_sends(prefix, args.requests, "sent")
                delivered_before = template_counter("delivered_count")
            bodies = [signed(statuses_payload(status_event(key, "delivered", "5491155550001"))) for key in keys]
            bodies += bodies[::10]
            queued_before, cpu_before = OrmQ.objects.count(), web_cpu()
            latencies, answers, wall = fire(args.port, bodies, args.clients)
            server_cpu_ms.append((web_cpu() - cpu_before) * 1000 / len(bodies))
            stored = WebhookEvent.objects.filter(dedupe_key__in=[f"status:{k}:delivered" for k in keys])
            new_answers = sum(answer["stored"] for answer in answers)
            stored_count = stored.count()
            if args.production:
                applied, applied_line = applied_once(prefix, args.requests, "delivered", "delivered_count", delivered_before)
                exactly_once = applied and stored_count == new_answers == args.requests
                check = f"{applied_line}"
            else:
                queued = OrmQ.objects.count() - queued_before  # drains: one while none waits to start (not one per event)
                exactly_once = stored_count == args.requests == new_answers and 1 <= queued <= stored_count
                check = f"drain tasks queued {queued}"
            verdicts.append(exactly_once)
            rates.append(len(bodies) / wall)
            medians.append(statistics.median(latencies))
            p95s.append(percentile(latencies, 0.95))
            print(f"(a) run {run + 1}: {len(bodies)} requests ({args.requests} new + {len(bodies) - args.requests} redelivered) "
                  f"from {args.clients} clients in {wall:.2f} s: {rates[-1]:.0f} req/s, median {medians[-1]:.1f} ms, "
                  f"p95 {p95s[-1]:.1f} ms, web CPU {server_cpu_ms[-1]:.1f} ms/request; stored {stored_count}, answered stored "
                  f"{new_answers}, {check}: {'each status applied exactly once' if exactly_once else 'MISMATCH'}", flush=True)
            # (b) one delivery of --batch changes
            prefix = f"wamid.B{run}N"
            if args.production:
                seed_sends(prefix, args.batch, "unknown")
                sent_before = template_counter("sent_count")
            payload = statuses_payload([status_event(f"{prefix}0", "sent", "5491155550001")])
            changes = payload["entry"][0]["changes"]
            changes[:] = [statuses_payload(status_event(f"{prefix}{i}", "sent", "5491155550001"))["entry"][0]["changes"][0]
                          for i in range(args.batch)]
            queued_before, cpu_before = OrmQ.objects.count(), web_cpu()
            latencies, answers, _ = fire(args.port, [signed(payload)], 1)
            batch_ms.append(latencies[0])
            batch_cpu_ms.append((web_cpu() - cpu_before) * 1000)
            if args.production:
                applied, check = applied_once(prefix, args.batch, "sent", "sent_count", sent_before)
                verdicts.append(applied)
            else:
                check = f"tasks queued {OrmQ.objects.count() - queued_before}"
            print(f"(b) run {run + 1}: one delivery of {args.batch} changes answered 200 in {latencies[0]:.1f} ms "
                  f"(web CPU {batch_cpu_ms[-1]:.0f} ms); answer {answers[0]}, {check}", flush=True)
    finally:
        if args.production:
            stop_server(server)
        else:
            server.terminate()
            server.wait(10)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\nmedian over {args.runs} runs:")
    print(f"(a) {statistics.median(rates):.0f} req/s, median {statistics.median(medians):.1f} ms, p95 {statistics.median(p95s):.1f} ms "
          f"({'ok' if statistics.median(p95s) < TARGET_P95_MS else 'MISSED'}: p95 < {TARGET_P95_MS} ms), "
          f"web CPU {statistics.median(server_cpu_ms):.1f} ms per request")
    print(f"(b) {statistics.median(batch_ms):.1f} ms for {args.batch} changes "
          f"({'ok' if statistics.median(batch_ms) < TARGET_BATCH_MS else 'MISSED'}: < {TARGET_BATCH_MS} ms), "
          f"web CPU {statistics.median(batch_cpu_ms):.0f} ms")
    if args.production:
        print("every status applied exactly once in every run" if all(verdicts) else "statuses: MISMATCH in some run")


if __name__ == "__main__":
    main()
