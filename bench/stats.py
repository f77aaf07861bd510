"""Time the stats endpoints on the account bench/generate.py built: full requests through Django's
test Client (URL routing, auth, rate limit, envelope, JSON), 20 calls per endpoint and range.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crm_bench .venv/bin/python bench/stats.py [--runs 20]

Prints the median and p95 in milliseconds per endpoint and time_range, and the targets
(median < 100 ms for 30d and 90d, < 500 ms for lifetime).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/crm_bench"
RANGES = ("30d", "90d", "lifetime")
TARGET_MS = {"30d": 100, "90d": 100, "lifetime": 500}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--ranges", default=",".join(RANGES))
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
    user = get_user_model().objects.get(username="bench")
    client = Client()
    client.force_login(user)
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
    ranges = [r for r in args.ranges.split(",") if r]
    print(f"{'endpoint':<32}{'range':<10}{'median ms':>10}{'p95 ms':>10}  target")
    misses = 0
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
            target = TARGET_MS[time_range] if time_range in TARGET_MS else None
            verdict = "" if target is None else ("ok" if median < target else "MISSED")
            misses += verdict == "MISSED"
            print(f"{name:<32}{time_range:<10}{median:>10.1f}{p95:>10.1f}  {verdict} (< {target} ms)" if target else
                  f"{name:<32}{time_range:<10}{median:>10.1f}{p95:>10.1f}", flush=True)
    print("all medians within target" if not misses else f"{misses} medians over target")


if __name__ == "__main__":
    main()
