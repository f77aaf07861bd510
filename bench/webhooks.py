"""Time the Meta webhook intake against a real running server on PostgreSQL.

    .venv/bin/python bench/webhooks.py [--requests 2000] [--clients 8] [--runs 3] [--batch 500]

The database named in DATABASE_URL (default crm_events_bench; its name must contain "bench") is
DROPPED, recreated and migrated. The script then starts `manage.py runserver --noreload` on
127.0.0.1 with production settings (DEBUG off, Redis cache for the rate limits, the ORM broker) and:

(a) fires `--requests` signed status webhooks (one status each, built with the sandbox's
    `statuses_payload`) from `--clients` concurrent clients, plus a redelivery of every tenth one
    (Meta retries), and prints requests/s and the median / p95 of the 200 answer; then checks that
    every status is stored exactly once and one processing task was queued per new event;
(b) posts one delivery of `--batch` status changes and prints the time to the 200 answer, checking
    that the changes were stored and exactly one task was queued for them.

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
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/crm_events_bench"
APP_SECRET = "bench-app-secret-" + secrets.token_hex(8)
TARGET_P95_MS, TARGET_BATCH_MS = 50, 200


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


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
        local.conn.request("POST", "/webhooks/meta", body=item[0], headers=item[1])
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", DEFAULT_URL)
    recreate_database(url)
    env = server_environment(url)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "SECRET_KEY", "META_TOKEN_KEYS", "META_APP_SECRET", "CACHE_URL", "DEBUG")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_marketing.settings")
    import django

    django.setup()
    from django_q.models import OrmQ

    from crm_marketing.models import WebhookEvent
    from crm_marketing.sandbox.webhooks import status_event, statuses_payload

    server = start_server(env, args.port)
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"PostgreSQL database {urlparse(url).path.lstrip('/')}, runserver --noreload (threaded), DEBUG off, ORM broker")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        fire(args.port, [signed(statuses_payload(status_event(f"wamid.WARM{i}", "sent", "5491155550001"))) for i in range(50)], args.clients)
        rates, medians, p95s, batch_ms, server_cpu_ms, batch_cpu_ms = [], [], [], [], [], []
        for run in range(args.runs):
            # (a) single-status deliveries, with every tenth one delivered again (Meta retries)
            keys = [f"wamid.R{run}N{i}" for i in range(args.requests)]
            bodies = [signed(statuses_payload(status_event(key, "delivered", "5491155550001"))) for key in keys]
            bodies += bodies[::10]
            queued_before, cpu_before = OrmQ.objects.count(), cpu_seconds(server.pid)
            latencies, answers, wall = fire(args.port, bodies, args.clients)
            server_cpu_ms.append((cpu_seconds(server.pid) - cpu_before) * 1000 / len(bodies))
            stored = WebhookEvent.objects.filter(dedupe_key__in=[f"status:{k}:delivered" for k in keys])
            new_answers = sum(answer["stored"] for answer in answers)
            queued = OrmQ.objects.count() - queued_before
            exactly_once = stored.count() == args.requests == new_answers == queued
            rates.append(len(bodies) / wall)
            medians.append(statistics.median(latencies))
            p95s.append(percentile(latencies, 0.95))
            print(f"(a) run {run + 1}: {len(bodies)} requests ({args.requests} new + {len(bodies) - args.requests} redelivered) "
                  f"from {args.clients} clients in {wall:.2f} s: {rates[-1]:.0f} req/s, median {medians[-1]:.1f} ms, "
                  f"p95 {p95s[-1]:.1f} ms, server CPU {server_cpu_ms[-1]:.1f} ms/request; stored {stored.count()}, answered stored {new_answers}, tasks queued {queued}: "
                  f"{'each status stored exactly once' if exactly_once else 'MISMATCH'}")
            # (b) one delivery of --batch changes
            payload = statuses_payload([status_event(f"wamid.B{run}N0", "sent", "5491155550001")])
            changes = payload["entry"][0]["changes"]
            changes[:] = [statuses_payload(status_event(f"wamid.B{run}N{i}", "sent", "5491155550001"))["entry"][0]["changes"][0]
                          for i in range(args.batch)]
            queued_before, cpu_before = OrmQ.objects.count(), cpu_seconds(server.pid)
            latencies, answers, _ = fire(args.port, [signed(payload)], 1)
            queued = OrmQ.objects.count() - queued_before
            batch_ms.append(latencies[0])
            batch_cpu_ms.append((cpu_seconds(server.pid) - cpu_before) * 1000)
            print(f"(b) run {run + 1}: one delivery of {args.batch} changes answered 200 in {latencies[0]:.1f} ms "
                  f"(server CPU {batch_cpu_ms[-1]:.0f} ms); "
                  f"answer {answers[0]}, tasks queued {queued}")
    finally:
        server.terminate()
        server.wait(10)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\nmedian over {args.runs} runs:")
    print(f"(a) {statistics.median(rates):.0f} req/s, median {statistics.median(medians):.1f} ms, p95 {statistics.median(p95s):.1f} ms "
          f"({'ok' if statistics.median(p95s) < TARGET_P95_MS else 'MISSED'}: p95 < {TARGET_P95_MS} ms), "
          f"server CPU {statistics.median(server_cpu_ms):.1f} ms per request")
    print(f"(b) {statistics.median(batch_ms):.1f} ms for {args.batch} changes "
          f"({'ok' if statistics.median(batch_ms) < TARGET_BATCH_MS else 'MISSED'}: < {TARGET_BATCH_MS} ms), "
          f"server CPU {statistics.median(batch_cpu_ms):.0f} ms")


if __name__ == "__main__":
    main()
