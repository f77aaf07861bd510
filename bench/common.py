"""What every benchmark script prints its figures with: percentiles, a free loopback port, the load average."""
from __future__ import annotations

import os
import socket


def percentile(values: list[float], share: float) -> float:
    """The value at ``share`` (0.95: p95) of the sorted values, nearest rank; NaN for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))] if ordered else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loadavg() -> str:
    """The machine's 1, 5 and 15 minute load averages, as printed beside every figure."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def vacuum(*models) -> None:
    """VACUUM ANALYZE the models' tables, between timed runs: what autovacuum does on a production server (this
    machine's PostgreSQL runs with autovacuum off). Django's autocommit: VACUUM cannot run in a transaction."""
    from django.db import connection

    with connection.cursor() as cursor:
        for model in models:
            cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it ("unknown" where /proc/cpuinfo has none)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown")
    except OSError:
        return "unknown"


def calibration_ms(repeats: int = 5) -> float:
    """Milliseconds one core takes for a fixed pure-Python workload (median of ``repeats``): JSON encoding,
    Decimal arithmetic and dict building, the kind of work a request does. Two hosts sold as "2 cores" differ
    by 2x and more (an outside rerun of this README's figures came out 1.1-1.6x slower): a figure is only
    comparable beside this number, measured on an idle machine."""
    import json
    import statistics
    import time
    from decimal import Decimal

    rows = [{"id": str(i), "name": f"Campaign {i}", "spend": Decimal(i) / 7, "leads": i * 3} for i in range(2000)]
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(4):
            total = sum((row["spend"] * 3).quantize(Decimal("0.01")) for row in rows)
            json.dumps([{**row, "spend": str(row["spend"]), "total": str(total)} for row in rows])
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def host() -> str:
    """The host line every benchmark prints first: cores, CPU model and its calibration figure."""
    return f"{os.cpu_count()} cores, {cpu_model()}, calibration {calibration_ms():.1f} ms (bench/common.py; lower is faster)"
