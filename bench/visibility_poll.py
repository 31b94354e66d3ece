"""What long polls of the visibility version cost Redis, and how soon they answer a hide.

The questions service runs as a process on its own redis-server (consumers at their
default polling interval). Pollers hold `GET /moderation/visibility?after=N&wait_s=4` as
a web replica does (asking again as soon as one is answered). With 0, 1 and 10 pollers
and no moderation activity, the Redis commands a second are the delta of INFO
commandstats over `window_s`; then an admin hides and restores a question in turn, and
each delay is from sending the decision to a poller's answer with the new version (it
includes the questions consumer applying the decision).

    python -m bench.visibility_poll [--window 10] [--decisions 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx
import redis

from tests.support import RedisServer, ServiceProcess, auth

WAIT_S = 4
ADMIN = auth("admin-bench", "admin")
QUESTION = {
    "title": "Acne scars on my cheeks",
    "body": "What helps with old acne scars?",
    "topics": ["acne"],
    "location": {"city": "Los Angeles", "state": "CA"},
}


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the stats were reset (INFO commandstats)."""
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()}


class Poller:
    """One long poll held open all the time, as a web replica holds it."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.known: int | None = None
        self.seen: dict[int, float] = {}

    async def run(self) -> None:
        while True:
            params: dict[str, Any] = {"wait_s": WAIT_S}
            if self.known is not None:
                params["after"] = self.known
            reply = await self.http.get("/moderation/visibility", params=params, timeout=30)
            reply.raise_for_status()
            version = int(reply.json()["version"])
            self.seen.setdefault(version, time.monotonic())
            self.known = version


async def measure(url: str, client: redis.Redis, pollers: int, window_s: float) -> float:
    """Redis commands a second with `pollers` long polls waiting and nothing decided."""
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=50)) as http:
        tasks = [asyncio.ensure_future(Poller(http).run()) for _ in range(pollers)]
        await asyncio.sleep(2)  # every poll has started waiting
        client.config_resetstat()
        before = command_calls(client)
        await asyncio.sleep(window_s)
        after = command_calls(client)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
    delta.pop("config|resetstat", None)
    delta.pop("info", None)
    total = sum(delta.values())
    top = ", ".join(
        f"{k} {v / window_s:.1f}" for k, v in sorted(delta.items(), key=lambda i: -i[1])
    )
    print(f"pollers={pollers:2d}  commands/s={total / window_s:7.1f}  ({top})", flush=True)
    return total / window_s


async def delays(url: str, qid: str, pollers: int, decisions: int) -> list[float]:
    """Seconds from sending a hide or restore to each poller's answer with the new version."""
    found: list[float] = []
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=50)) as http:
        polls = [Poller(http) for _ in range(pollers)]
        tasks = [asyncio.ensure_future(p.run()) for p in polls]
        await asyncio.sleep(1)
        for i in range(decisions):
            version = max(polls[0].seen)
            await asyncio.sleep(0.3 + (i % 7) * 0.11)  # land anywhere in a poll's wait
            sent = time.monotonic()
            decision = "hidden" if i % 2 == 0 else "restored"
            reply = await http.put(
                f"/moderation/questions/{qid}", json={"decision": decision}, headers=ADMIN
            )
            reply.raise_for_status()
            deadline = time.monotonic() + 10
            while not all(version + 1 in p.seen for p in polls):
                if time.monotonic() > deadline:
                    raise RuntimeError("a poller did not see the decision in 10 s")
                await asyncio.sleep(0.005)
            found += [p.seen[version + 1] - sent for p in polls]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return found


async def main(window_s: float, decisions: int) -> None:
    server = RedisServer().start()
    service = ServiceProcess(
        "questions",
        server.url,
        ASKDOC_POLLING_INTERVAL_MS="100",
        ASKDOC_CLAIM_IDLE_MS="30000",
        ASKDOC_LOG_LEVEL="WARNING",
    ).start()
    client = server.client()
    try:
        url = service.url
        posted = httpx.post(f"{url}/questions", json=QUESTION, headers=auth("pat"), timeout=10)
        posted.raise_for_status()
        qid = posted.json()["id"]
        for pollers in (0, 1, 10):
            await measure(url, client, pollers, window_s)
        for pollers in (1, 10):
            found = await delays(url, qid, pollers, decisions)
            print(
                f"pollers={pollers:2d}  hide->answer s: median {statistics.median(found):.3f}"
                f"  max {max(found):.3f}  (n={len(found)})",
                flush=True,
            )
    finally:
        service.terminate(10)
        server.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--decisions", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.window, args.decisions))
