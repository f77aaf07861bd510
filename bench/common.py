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
