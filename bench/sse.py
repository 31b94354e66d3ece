"""4: live streams. One notify process holds 10,000 `/inbox/stream` connections, opened
by a load client in another process (bench/sse_client.py); beside it, in the same run, a
bare Starlette SSE endpoint fed by one XREAD loop (bench/sse_baseline_app.py) holds as
many from a second client.

- Memory: each server's RSS before and after its connections open, per connection.
- Latency: bursts of notifications to BURST distinct connected doctors, each committed
  the way notify commits one (inbox item and `askdoc.notification-sent` entry in one
  script). A receipt's latency runs from the entry's XADD (its id is Redis's clock, in
  ms) to the moment the client reads the event's `id:` line. Bursts alternate between
  the two servers (bench/harness.py), both holding their connections all along, so a
  busy spell on the machine hits both; each p99 is the median over the rounds.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench.common import JWT_SECRET, ROOT, RedisServer, ServiceProcess, percentile, start_uvicorn
from bench.harness import Figures, alternate, fmt_spread
from bench.report import Row, Section
from shared import streams
from shared.events import WIRE_FIELD

BURST = 1000
#: notify as deployed, quiet logs. Each doctor holds one stream (the cap is 5); tokens
#: last an hour, well past the run.
NOTIFY_ENV = {"ASKDOC_LOG_LEVEL": "WARNING", "ASKDOC_SSE_MAX_STREAMS_PER_USER": "5"}
READY_S = 180


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class LoadClient:
    """bench/sse_client.py in its own process, driven over its stdin and stdout."""

    def __init__(self, port: int, connections: int, prefix: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.sse_client",
                "127.0.0.1",
                str(port),
                str(connections),
                prefix,
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.received: dict[str, float] = {}

    def opened(self) -> dict[str, Any]:
        """Wait until the client has opened its connections; its report."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the SSE load client died while connecting")
        report: dict[str, Any] = json.loads(line)
        return report

    def collect(self) -> int:
        """Fetch the receipts so far; how many connections are still open."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("collect\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        self.received.update(reply["received"])
        return int(reply["open"])

    def close(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def commit_burst(server: RedisServer, recipients: list[str]) -> float:
    """Commit one notification to each recipient as notify does; the seconds it took."""
    from services.notify import SERVICE
    from services.notify.inbox.domain import fresh_item
    from services.notify.parts import build_parts
    from services.notify.settings import NotifySettings
    from shared.atomic import Committer
    from shared.redis import make_redis

    async def send() -> float:
        settings = NotifySettings(redis_url=server.url, jwt_secret=JWT_SECRET)  # type: ignore[arg-type]
        client = make_redis(settings)
        tag = streams.slot_tag(streams.HOME_STREAM[SERVICE])
        parts = build_parts(client, Committer(client), tag, settings)
        await client.ping()
        gate = asyncio.Semaphore(64)

        async def one(recipient: str) -> None:
            item = fresh_item(
                "question-match",
                datetime.now(UTC),
                question_id="sse-bench",
                reason={"specialty": "dermatology", "distance_km": 3.2, "rank": 1},
            )
            note = parts.inbox.notification(recipient, item, {"channels": []})
            async with gate:
                await parts.stores.inbox.add_once(note, f"sse-bench:{item['id']}")

        started = time.perf_counter()
        await asyncio.gather(*(one(r) for r in recipients))
        took = time.perf_counter() - started
        await client.aclose()
        return took

    return asyncio.run(send())


def sent_at(client: redis.Redis, after: str) -> dict[str, float]:
    """Notification id -> epoch seconds of its XADD, for the entries after `after`."""
    out: dict[str, float] = {}
    for entry_id, fields in client.xrange(streams.NOTIFICATION_SENT, f"({after}", "+"):  # type: ignore[union-attr]
        data = json.loads(fields[WIRE_FIELD])
        out[data["notification_id"]] = int(entry_id.split("-")[0]) / 1000
    return out


def last_entry(client: redis.Redis) -> str:
    tail: Any = client.xrevrange(streams.NOTIFICATION_SENT, count=1)
    return str(tail[0][0]) if tail else "0-0"


class Side:
    """One server holding streams: its process, its load client, its doctors."""

    def __init__(self, server: RedisServer, pid: int, port: int, prefix: str) -> None:
        self.server = server
        self.redis = server.client()
        self.pid = pid
        self.port = port
        self.prefix = prefix
        self.rng = random.Random(prefix)
        self.load: LoadClient | None = None
        self.before = 0
        self.open: list[int] = []

    def start_connecting(self, connections: int) -> None:
        """Note the server's memory, then have the load client open the connections."""
        self.before = rss_kib(self.pid)
        self.load = LoadClient(self.port, connections, self.prefix)

    def connected(self) -> dict[str, Any]:
        """Wait until the connections are open; the server's memory per connection."""
        assert self.load is not None
        report = self.load.opened()
        time.sleep(2.0)  # the last streams settle
        after = rss_kib(self.pid)
        self.open = report["open"]
        held = len(self.open)
        return {
            "connections": held,
            "failed": report["failed"],
            "open_seconds": report["seconds"],
            "rss_before_mb": round(self.before / 1024, 1),
            "rss_after_mb": round(after / 1024, 1),
            "kib_per_connection": round((after - self.before) / max(held, 1), 2),
        }

    def burst(self) -> Figures:
        """Alerts to BURST of the connected doctors; latency XADD -> client, in ms."""
        assert self.load is not None
        chosen = self.rng.sample(self.open, min(BURST, len(self.open)))
        mark = last_entry(self.redis)
        took = commit_burst(self.server, [f"{self.prefix}{i}" for i in chosen])
        sent = sent_at(self.redis, mark)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            self.load.collect()
            if all(nid in self.load.received for nid in sent):
                break
            time.sleep(0.1)
        lat = [
            (self.load.received[n] - t) * 1000 for n, t in sent.items() if n in self.load.received
        ]
        time.sleep(0.3)
        return {
            "p50_ms": percentile(lat, 50),
            "p99_ms": percentile(lat, 99),
            "max_ms": max(lat, default=float("nan")),
            "missing": float(len(sent) - len(lat)),
            "commit_s": took,
        }

    def still_open(self) -> int:
        assert self.load is not None
        return self.load.collect()

    def close(self) -> None:
        if self.load is not None:
            self.load.close()


def run(quick: bool = False) -> dict[str, Any]:
    """Both servers hold the connections; memory from each; bursts alternate between them."""
    connections = 2000 if quick else 10_000
    rounds = 2 if quick else 3
    server = RedisServer().start()
    notify = ServiceProcess("notify", server.url, **NOTIFY_ENV)
    notify.start(wait_ready=False)
    bare, url = start_uvicorn("bench.sse_baseline_app:app", server.url)
    sides: list[Side] = []
    try:
        notify.wait_ready(READY_S)
        baseline = Side(server, bare.pid, int(url.rsplit(":", 1)[1]), "sse-base-")
        askdoc = Side(server, notify.pid, notify.port, "sse-doctor-")
        sides = [baseline, askdoc]
        time.sleep(1.0)  # both idle
        # Both open at once (a process each, so each server's RSS is its own): half the wait.
        for side in sides:
            side.start_connecting(connections)
        memory = {"baseline": baseline.connected(), "askdoc": askdoc.connected()}
        bursts = alternate({"askdoc": askdoc.burst, "baseline": baseline.burst}, rounds=rounds)
        for name, side in (("askdoc", askdoc), ("baseline", baseline)):
            memory[name]["still_open_after_bursts"] = side.still_open()
    finally:
        for side in sides:
            side.close()
        notify.terminate(30)
        bare.terminate(30)
        server.cleanup()
    ours = {**memory["askdoc"], **bursts["askdoc"]}
    base = {**memory["baseline"], **bursts["baseline"]}
    return {
        "connections": ours["connections"],
        "kib_per_connection": ours["kib_per_connection"],
        "p99_ms": round(ours["p99_ms"], 1),
        "p99_ms_spread": ours["spread"]["p99_ms"],
        "baseline_connections": base["connections"],
        "baseline_kib_per_connection": base["kib_per_connection"],
        "baseline_p99_ms": round(base["p99_ms"], 1),
        "baseline_p99_ms_spread": base["spread"]["p99_ms"],
        "burst": BURST,
        "rounds": rounds,
        "askdoc": ours,
        "baseline": base,
    }


# --- how live streams read in latest.json and the table (bench/report.py) ---------------


def rows(result: Mapping[str, Any]) -> list[Row]:
    ours, base = result["askdoc"], result["baseline"]
    return [
        (
            "live streams held by one process (SSE)",
            f"{ours['connections']:,} connections, {ours['kib_per_connection']:.1f} KiB each",
            f"bare Starlette SSE: {base['connections']:,}, "
            f"{base['kib_per_connection']:.1f} KiB each",
            f"{ours['kib_per_connection'] / base['kib_per_connection']:.2f}x memory",
            ">= 10,000, <= 32 KiB",
        ),
        (
            f"burst of {result['burst']:,} alerts: XADD -> SSE client",
            f"p50 {fmt_spread(ours, 'p50_ms', ' ms')}, p99 {fmt_spread(ours, 'p99_ms', ' ms')}",
            f"same burst, bare endpoint: p50 {fmt_spread(base, 'p50_ms', ' ms')}, "
            f"p99 {fmt_spread(base, 'p99_ms', ' ms')}",
            f"{ours['p99_ms'] / base['p99_ms']:.2f}x p99",
            "p99 <= 250 ms",
        ),
    ]


SECTION = Section("sse", "live streams (10k SSE connections)", run, rows=rows)


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
