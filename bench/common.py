"""Helpers shared by the benchmarks: processes, percentiles (wrk: bench/harness.py)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx

from askdoc_cli.launcher import ROOT, Child
from tests.support import JWT_SECRET, RedisServer, ServiceProcess, free_port, token

__all__ = ["JWT_SECRET", "ROOT", "Child", "RedisServer", "ServiceProcess", "free_port", "token"]


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values)


def start_uvicorn(module: str, redis_url: str) -> tuple[Child, str]:
    """Run a bare ASGI app (the baseline) with uvicorn in its own process."""
    port = free_port()
    child = Child(
        module,
        [sys.executable, "-m", "uvicorn", module, "--port", str(port), "--no-access-log"],
        {**os.environ, "ASKDOC_REDIS_URL": redis_url},
    )
    child.spawn()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and child.running():
        with suppress(httpx.HTTPError):
            httpx.get(url + "/docs", timeout=1)
            return child, url
        time.sleep(0.1)
    child.terminate(5)
    raise RuntimeError(f"{module} did not start")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import platform

    cpu = "unknown"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis": redis_version,
    }
