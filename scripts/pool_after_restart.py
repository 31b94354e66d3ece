"""Do pooled connections opened before a Redis restart fail their first command after it?

    python scripts/pool_after_restart.py [--connections 50] [--rounds 3] [--loop asyncio|uvloop]
                                         [--stock]

Starts its own redis-server (AOF on, a free loopback port), fills shared.redis's
make_redis pool with N connections, SIGKILLs redis-server and starts it again on its AOF,
then counts the failures of N sequential reads and of N concurrent reads. Three cases:

* idle: the N connections sat idle in the pool across the restart;
* in-use: N blocking reads (BLPOP) were in flight on them when Redis died;
* outage-calls: idle, and N reads were tried (and failed) while Redis was down.

Prints one line per case and round, then the totals. Touches no other Redis. `--stock`
builds the client with redis-py's default maintenance-notifications setting instead of
askdoc's (see shared.redis._no_maint_notifications), to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from askdoc_cli.launcher import RedisProcess
from shared.redis import make_redis
from shared.settings import Settings


async def _fill(client: Any, n: int) -> int:
    # N reads at once: each takes its own connection; they go back to the pool idle.
    await asyncio.gather(*(client.blpop(["probe:none"], timeout=0.05) for _ in range(n)))
    pool = client.connection_pool
    return len(pool._available_connections)


async def _reads(client: Any, n: int, concurrent: bool) -> Counter[str]:
    outcomes: Counter[str] = Counter()

    async def one(i: int) -> None:
        try:
            await client.get(f"probe:{i}")
            outcomes["ok"] += 1
        except Exception as exc:  # what is counted is exactly what fails
            outcomes[f"{type(exc).__name__}: {exc}"[:80]] += 1

    if concurrent:
        await asyncio.gather(*(one(i) for i in range(n)))
    else:
        for i in range(n):
            await one(i)
    return outcomes


def _restart(server: RedisProcess, down_s: float) -> None:
    server.kill()
    time.sleep(down_s)
    server.start()


async def _case(
    server: RedisProcess, case: str, n: int, concurrent: bool, stock: bool
) -> Counter[str]:
    # None: redis-py picks its default ("auto" with RESP3).
    options = {"maint_notifications_config": None} if stock else {}
    client = make_redis(Settings(redis_url=server.url, jwt_secret="x" * 32), **options)
    try:
        filled = await _fill(client, n)
        in_flight: asyncio.Future[Any] | None = None
        if case == "in-use":
            in_flight = asyncio.gather(
                *(client.blpop(["probe:none"], timeout=5) for _ in range(n)),
                return_exceptions=True,
            )
            await asyncio.sleep(0.2)
        server.kill()
        if in_flight is not None:
            await in_flight  # they fail now: "Connection closed by server"
        if case == "outage-calls":
            await _reads(client, n, concurrent=True)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.start)
        outcomes = await _reads(client, n, concurrent)
        outcomes["_pooled_before"] = filled
        return outcomes
    finally:
        await client.aclose()


async def main(n: int, rounds: int, stock: bool) -> int:
    server = RedisProcess(appendonly=True, appendfsync="always").start()
    totals: Counter[str] = Counter()
    try:
        for r in range(rounds):
            for case in ("idle", "in-use", "outage-calls"):
                for concurrent in (False, True):
                    outcomes = await _case(server, case, n, concurrent, stock)
                    mode = "concurrent" if concurrent else "sequential"
                    failed = n - outcomes["ok"]
                    totals[f"{case} {mode}"] += failed
                    errors = {k: v for k, v in outcomes.items() if not k.startswith(("ok", "_"))}
                    print(
                        f"round {r + 1} {case:>12} {mode:>10}: {failed}/{n} failed "
                        f"(pool held {outcomes['_pooled_before']}) {errors or ''}"
                    )
    finally:
        server.terminate(5)
    print("failures after restart, totals over", rounds, "rounds:")
    for key, value in totals.items():
        print(f"  {key}: {value}/{n * rounds}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--stock", action="store_true", help="redis-py's default pool check")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()
    sys.exit(asyncio.run(main(args.connections, args.rounds, args.stock)))
