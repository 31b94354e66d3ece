"""Baselines measured in the same run: a bare consumer loop, redis-benchmark, one hop."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from typing import Any

import redis

from bench.common import percentile


def raw_loop_rate(url: str, stream: str, count: int) -> float:
    """Entries/s of a plain redis-py XREADGROUP/XACK loop, one entry at a time, no work."""
    client = redis.Redis.from_url(url)
    group = "raw-baseline"
    client.xgroup_create(stream, group, id="0", mkstream=True)
    done = 0
    started = time.perf_counter()
    while done < count:
        reply = client.xreadgroup(group, "c1", {stream: ">"}, count=1, block=1000)
        if not reply:
            break
        for _, entries in reply:
            for entry_id, _fields in entries:
                client.xack(stream, group, entry_id)
                done += 1
    elapsed = time.perf_counter() - started
    client.xgroup_destroy(stream, group)
    return done / elapsed


def redis_benchmark_xadd(port: int, requests: int = 100_000, clients: int = 50) -> float:
    """The ceiling: redis-benchmark's XADD rate with 50 clients (requests/s)."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise RuntimeError("redis-benchmark is missing (Debian's redis-tools/redis-server)")
    out = subprocess.run(
        [
            binary,
            "-p",
            str(port),
            "-n",
            str(requests),
            "-c",
            str(clients),
            "-q",
            "XADD",
            "bench.ceiling",
            "MAXLEN",
            "~",
            "100000",
            "*",
            "__data__",
            "x" * 400,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rates = re.findall(r"([\d.]+) requests per second", out)
    return float(rates[-1])


def hop_latency(url: str, rate: float, seconds: float = 5.0) -> dict[str, Any]:
    """One XADD -> XREADGROUP hop at a fixed rate: p50/p99 in ms."""
    stream = "bench.hop"
    group = "hop"
    producer = redis.Redis.from_url(url)
    consumer = redis.Redis.from_url(url)
    producer.delete(stream)
    producer.xgroup_create(stream, group, id="$", mkstream=True)
    latencies: list[float] = []
    total = int(rate * seconds)
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set() or len(latencies) < total:
            reply = consumer.xreadgroup(group, "c", {stream: ">"}, count=100, block=200)
            now = time.perf_counter()
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    latencies.append((now - float(fields[b"t"])) * 1000)
                    consumer.xack(stream, group, entry_id)
            if stop.is_set() and not reply:
                break

    thread = threading.Thread(target=consume)
    thread.start()
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for _ in range(total):
        producer.xadd(stream, {"t": repr(time.perf_counter())})
        next_at += interval
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    stop.set()
    thread.join(30)
    return {
        "rate_per_s": rate,
        "samples": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }
