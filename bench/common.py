"""Helpers shared by the benchmarks: processes, wrk, percentiles."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
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


_WRK_LUA = """
wrk.method = "POST"
wrk.body = '{"title": "Is there a treatment for facial asymmetry?", "body": "My face is asymmetrical; is there an injection?", "topics": ["facial-asymmetry", "botox"], "location": {"zip": "90012"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
"""


def wrk_post(url: str, bearer: str, seconds: int = 10, connections: int = 32) -> dict[str, float]:
    """Load `url` with POSTs from wrk (a separate process); requests/s, p50, p99 in ms."""
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is missing: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_LUA % bearer)
    out = subprocess.run(
        [binary, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "requests_per_s": rps,
        "p50_ms": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
    }


def _ms(text: str) -> float:
    value = float(re.match(r"[\d.]+", text).group(0))  # type: ignore[union-attr]
    unit = text[len(re.match(r"[\d.]+", text).group(0)) :]  # type: ignore[union-attr]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


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
