"""Where Redis spends its time in the fan-out: one notify replica drains question-posted
events on the bench's 10,000 doctors, and Redis's own counters over the drain are printed
(INFO commandstats deltas, commands inside scripts included; SLOWLOG at threshold 0 for
each script's duration). `python -m bench.fanout_profile [events] [rounds]`."""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from typing import Any

import redis

from bench.common import RedisServer, ServiceProcess
from bench.fanout import alerts_sent, drained, fill, load_directory, question_events, redis_cpu_s
from shared import streams


def commandstats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in stats.items()}


def script_names(client: redis.Redis) -> dict[str, str]:
    """sha1 -> file name of every Lua file the services load (to name the slowlog)."""
    import hashlib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    names = {}
    for path in [*root.glob("services/**/*.lua"), *root.glob("shared/**/*.lua")]:
        names[hashlib.sha1(path.read_bytes()).hexdigest()] = path.name
    return names


def profile(client: redis.Redis, n: int, seed: int) -> dict[str, Any]:
    events = question_events(n, seed=seed, prefix=f"qp{seed}-")
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 200_000)
    client.slowlog_reset()
    before, cpu, stats = alerts_sent(client), redis_cpu_s(client), commandstats(client)
    started = time.perf_counter()
    fill(client, streams.QUESTION_POSTED, events)
    while not drained(client, streams.QUESTION_POSTED, "notify"):
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    cpu_drain = redis_cpu_s(client) - cpu
    alerts = alerts_sent(client) - before
    # What the drain leaves behind (the inbox trims) runs on: until no script has been
    # called for a second, it counts too.
    calls = commandstats(client).get("evalsha", (0, 0))[0]
    while True:
        time.sleep(1.0)
        now = commandstats(client).get("evalsha", (0, 0))[0]
        if now == calls:
            break
        calls = now
    cpu = redis_cpu_s(client) - cpu
    after = commandstats(client)
    slow = client.slowlog_get(200_000)
    client.config_set("slowlog-log-slower-than", 10_000)
    names = script_names(client)
    scripts: dict[str, list[int]] = defaultdict(list)
    for entry in slow:
        args = entry["command"].split()
        if args and args[0].upper() in (b"EVALSHA", b"EVALSHA_RO"):
            scripts[names.get(args[1].decode(), args[1].decode()[:10])].append(entry["duration"])
    delta = {
        cmd: (calls - stats.get(cmd, (0, 0))[0], usec - stats.get(cmd, (0, 0))[1])
        for cmd, (calls, usec) in after.items()
    }
    delta = {k: v for k, v in delta.items() if v[0]}
    return {
        "events": n,
        "alerts": alerts,
        "seconds": elapsed,
        "events_per_s": n / elapsed,
        "redis_cpu_us_per_alert": cpu_drain / max(alerts, 1) * 1e6,
        "redis_cpu_us_per_event": cpu_drain / n * 1e6,
        "redis_cpu_share": cpu_drain / elapsed,
        "redis_cpu_us_per_event_with_after": cpu / n * 1e6,
        "commands": dict(sorted(delta.items(), key=lambda kv: -kv[1][1])),
        "scripts": {k: (len(v), sum(v)) for k, v in scripts.items()},
    }


def show(result: dict[str, Any]) -> None:
    n, alerts = result["events"], result["alerts"]
    print(
        f"{n} events, {alerts} alerts in {result['seconds']:.2f} s: "
        f"{result['events_per_s']:.0f} events/s; Redis CPU {result['redis_cpu_us_per_alert']:.1f}"
        f" us/alert, {result['redis_cpu_us_per_event']:.0f} us/event, share "
        f"{result['redis_cpu_share']:.0%}; with what runs after the drain "
        f"{result['redis_cpu_us_per_event_with_after']:.0f} us/event"
    )
    print("(calls and usec below: the drain and what ran after it)")
    total = sum(u for c, (_, u) in result["commands"].items() if c not in ("evalsha", "eval"))
    print(f"{'command':<22}{'calls':>9}{'/event':>8}{'usec':>10}{'us/event':>10}{'us/call':>9}")
    for cmd, (calls, usec) in result["commands"].items():
        print(
            f"{cmd:<22}{calls:>9}{calls / n:>8.2f}{usec:>10}{usec / n:>10.1f}"
            f"{usec / max(calls, 1):>9.2f}"
        )
    print(f"commands (inside scripts too, scripts themselves not): {total / n:.0f} us/event")
    for name, (calls, usec) in result["scripts"].items():
        print(f"script {name}: {calls} calls, {usec / n:.0f} us/event, {usec / calls:.0f} us/call")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    server = RedisServer().start()
    replica = None
    try:
        load_directory(server)
        replica = ServiceProcess("notify", server.url, ASKDOC_LOG_LEVEL="WARNING").start(
            timeout=180
        )
        client = server.client()
        profile(client, 100, 900)  # warm up
        results = [profile(client, n, seed) for seed in range(rounds)]
        for r in results:
            show(r)
        if "--json" in sys.argv:
            print(json.dumps(results))
    finally:
        if replica is not None:
            replica.terminate()
        server.cleanup()


if __name__ == "__main__":
    main()
