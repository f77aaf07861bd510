"""Time the stats endpoints on the account bench/generate.py built: full requests through Django's
test Client (URL routing, auth, rate limit, envelope, JSON), 20 calls per endpoint and range, in rounds.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crm_bench .venv/bin/python bench/stats.py [--runs 20] [--rounds 3] [--truth]

Prints the machine, the data size, the load average before and after each round, the median and p95 in
milliseconds per endpoint and time_range of each round, then the median over the rounds against the targets:
median < 100 ms and p95 < 200 ms for every endpoint and range, lifetime included. ``--truth`` first runs
bench/truth.py's check (every figure of stats and stats/roi against the raw tables) on the same ranges.
``--with-load N`` times the same reads while bench/load.py runs N clients on the same database (the
production run mode, stats cache on, half reads, half webhooks): it starts load.py, waits until its
clients have run for a while, times the rounds, then stops the clients and prints load.py's own summary
(its output is kept in a temporary file, named at the end).
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import host, loadavg, percentile  # noqa: E402
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/crm_bench"
RANGES = ("30d", "90d", "lifetime", "last_30d", "this_year")
TARGET_MEDIAN_MS, TARGET_P95_MS = 100, 200




def machine() -> str:
    from django.db import connection

    memory = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        size = cursor.fetchone()[0]
    return f"{host()}, {int(memory.split()[1]) // 1024 // 1024} GiB, PostgreSQL {version}, database {size}"


def data_size() -> str:
    from crm_marketing.models import Lead, Opportunity, Sale
    from marketing.models import Campaign, CampaignDay, DailyInsight

    def n(model) -> str:
        return f"{model.objects.filter(account__slug='bench').count():,}"

    return (f"leads {n(Lead)}, opportunities {n(Opportunity)}, sales {n(Sale)}, campaigns {n(Campaign)}, "
            f"insight rows {n(DailyInsight)}, CampaignDay rows {n(CampaignDay)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="calls per endpoint and range in a round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ranges", default=",".join(RANGES))
    parser.add_argument("--truth", action="store_true", help="first check every figure against the raw tables (bench/truth.py)")
    parser.add_argument("--with-load", type=int, default=0, metavar="CLIENTS",
                        help="time the reads while bench/load.py runs this many clients on the same database")
    parser.add_argument("--load-seconds", type=int, default=600,
                        help="with --with-load: the most load.py runs (it creates a webhook target per planned second; stopped when the rounds end)")
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    os.environ.setdefault("API_RATE_LIMIT", "1000000/m")  # the benchmark is one user calling in a loop
    os.environ.setdefault("STATS_CACHE_SECONDS", "0")  # time the reads themselves; bench/load.py measures the stats cache
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_marketing.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from marketing.models import Campaign

    settings.DEBUG = False  # no query log: measure what production runs
    import crm_marketing.wsgi  # noqa: F401, E402 - the app loaded as in each gunicorn worker (its gc.freeze() included)
    user = get_user_model().objects.get(username="bench")
    client = Client()
    client.force_login(user)
    ranges = [r for r in args.ranges.split(",") if r]
    print(f"machine: {machine()}; data: {data_size()}", flush=True)
    if args.truth:
        from bench.truth import check

        if check(client, [r for r in ranges if r in ("30d", "90d", "lifetime")] or ranges):
            sys.exit("the truth check failed: the figures are wrong, timing them is moot")
    top_campaign = Campaign.objects.filter(account__slug="bench").order_by("meta_campaign_id").values_list("meta_campaign_id", flat=True).first()
    endpoints = {
        "stats": "/crm/marketing/stats?time_range={r}",
        "stats/roi": "/crm/marketing/stats/roi?time_range={r}",
        "stats/timeseries": "/crm/marketing/stats/timeseries?time_range={r}",
        "stats/timeseries?campaign_id": "/crm/marketing/stats/timeseries?time_range={r}&campaign_id=" + top_campaign,
        "campaigns": "/crm/marketing/campaigns?time_range={r}&ordering=-roi&limit=50",
        "campaigns/{id}": "/crm/marketing/campaigns/" + top_campaign + "?time_range={r}",
        "campaigns/{id}/insights": "/crm/marketing/campaigns/" + top_campaign + "/insights?time_range={r}",
    }
    load = start_load(args.with_load, args.load_seconds) if args.with_load else None
    try:
        results = timed_rounds(client, endpoints, ranges, args)
    finally:
        if load is not None:
            stop_load(*load)
    print(f"\nmedian of {args.rounds} rounds ({args.runs} calls each){' under load.py --clients %d' % args.with_load if load else ''}; "
          f"targets: median < {TARGET_MEDIAN_MS} ms, p95 < {TARGET_P95_MS} ms")
    print(f"{'endpoint':<32}{'range':<10}{'median ms':>10}{'p95 ms':>10}  verdict")
    misses = 0
    for (name, time_range), rounds in results.items():
        median = statistics.median(m for m, _ in rounds)
        p95 = statistics.median(p for _, p in rounds)
        verdict = "ok" if median < TARGET_MEDIAN_MS and p95 < TARGET_P95_MS else "MISSED"
        misses += verdict == "MISSED"
        print(f"{name:<32}{time_range:<10}{median:>10.1f}{p95:>10.1f}  {verdict}")
    print("all within target" if not misses else f"{misses} of {len(results)} over target")


def start_load(clients: int, seconds: int, settle_seconds: float = 30) -> tuple[subprocess.Popen, str, str, float]:
    """bench/load.py with ``clients`` clients until the stop file appears; returns once they have run ``settle_seconds``,
    with when they would stop on their own (``seconds`` after they started, time.monotonic())."""
    from django.db import connections

    connections.close_all()
    with tempfile.NamedTemporaryFile(prefix="stats-with-load-", suffix=".log", delete=False) as named:
        log_path = named.name
    stop_file = log_path + ".stop"
    with open(log_path, "wb") as log:
        load = subprocess.Popen([sys.executable, str(ROOT / "bench" / "load.py"), "--clients", str(clients), "--seconds", str(seconds),
                                 "--runs", "1", "--send-pool-per-second", "250", "--stop-file", stop_file], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while "clients start at" not in Path(log_path).read_text(errors="replace"):
        if load.poll() is not None or time.monotonic() > deadline:
            stop_load(load, log_path, stop_file)
            sys.exit(f"bench/load.py did not start its clients; its output: {log_path}")
        time.sleep(1)
    print(f"bench/load.py --clients {clients} running (output: {log_path}); timing after {settle_seconds:.0f} s of load", flush=True)
    started = time.monotonic()
    time.sleep(settle_seconds)
    return load, log_path, stop_file, started + seconds


def stop_load(load: subprocess.Popen, log_path: str, stop_file: str, ends_at: float = float("inf")) -> None:
    """Stop load.py's clients; it then checks every webhook status and cleans up as after any run."""
    if load.poll() is not None or time.monotonic() > ends_at:
        print("\nWARNING: bench/load.py's clients stopped before the rounds ended; raise --load-seconds", flush=True)
    Path(stop_file).touch()
    try:
        load.wait(timeout=900)
    except subprocess.TimeoutExpired:
        load.send_signal(signal.SIGINT)  # its finally stops the run_production it started
        load.wait(timeout=120)
    lines = Path(log_path).read_text(errors="replace").splitlines()
    summary = lines[next((i for i, line in enumerate(lines) if line.startswith("median over")), max(0, len(lines) - 20)):]
    print("\nbench/load.py over its whole run (the 30 s before the rounds included):\n" + "\n".join(summary))
    Path(stop_file).unlink(missing_ok=True)


def timed_rounds(client, endpoints: dict[str, str], ranges: list[str], args) -> dict[tuple[str, str], list[tuple[float, float]]]:
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for round_number in range(1, args.rounds + 1):
        before = loadavg()
        print(f"\nround {round_number}: load average {before}")
        print(f"{'endpoint':<32}{'range':<10}{'median ms':>10}{'p95 ms':>10}")
        for name, template in endpoints.items():
            for time_range in ranges:
                url = template.format(r=time_range)
                response = client.get(url)  # warm-up, and check it answers
                if response.status_code != 200:
                    sys.exit(f"{url} answered {response.status_code}: {response.content[:300]!r}")
                timings = []
                for _ in range(args.runs):
                    started = time.perf_counter()
                    response = client.get(url)
                    timings.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200
                median, p95 = statistics.median(timings), percentile(timings, 0.95)
                results.setdefault((name, time_range), []).append((median, p95))
                print(f"{name:<32}{time_range:<10}{median:>10.1f}{p95:>10.1f}", flush=True)
        print(f"round {round_number}: load average {before} before, {loadavg()} after")
    return results


if __name__ == "__main__":
    main()
