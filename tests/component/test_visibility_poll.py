"""Long polls of the visibility version (GET /moderation/visibility?after=N&wait_s=..) on
the questions service in process, on a real redis-server: what many waiting requests cost
Redis (INFO commandstats), that a hide answers them all, and that a restart of Redis while
they wait is recovered from."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.questions.app import create_app
from tests.component.harness import in_process
from tests.support import RedisServer, auth

WAITERS = 20
#: The commands the long polls are answered from: the counter and its signal stream.
VISIBILITY_COMMANDS = ("get", "xread", "xrevrange")
ADMIN = auth("admin-1", "admin")
QUESTION: dict[str, Any] = {
    "title": "Acne scars on my cheeks",
    "body": "What helps with old acne scars?",
    "topics": ["acne"],
    "location": {"city": "Los Angeles", "state": "CA"},
}


@pytest.fixture
async def questions(redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    # A 2 s socket timeout makes the watcher's blocking read 1 s (half of it): a window
    # of a few seconds then sees each blocking read the waiters cost end and start again.
    async with in_process(create_app, redis_url, redis_socket_timeout_s=2) as pair:
        yield pair


async def ask(http: httpx.AsyncClient) -> str:
    posted = await http.post("/questions", json=QUESTION, headers=auth("pat"))
    assert posted.status_code == 201, posted.text
    qid: str = posted.json()["id"]
    return qid


async def decide(http: httpx.AsyncClient, qid: str, decision: str) -> None:
    # After a Redis restart a pooled connection's first command fails (a 503): retry it.
    for _ in range(20):
        reply = await http.put(
            f"/moderation/questions/{qid}", json={"decision": decision}, headers=ADMIN
        )
        if reply.status_code != 503:
            break
        await asyncio.sleep(0.2)
    assert reply.status_code == 200, reply.text


async def poll_until_past(http: httpx.AsyncClient, after: int, within_s: float = 20) -> int:
    """Hold the long poll as a web replica does (again as soon as it is answered) until the
    version is past `after`; the version then."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        reply = await http.get("/moderation/visibility", params={"after": after, "wait_s": 4})
        if reply.status_code == 200 and reply.json()["version"] != after:
            version: int = reply.json()["version"]
            return version
    raise AssertionError(f"the version did not move past {after} in {within_s} s")


async def visibility_calls(redis: Any) -> int:
    """Calls of the commands the long polls are answered from, since the last RESETSTAT."""
    stats = await redis.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in VISIBILITY_COMMANDS
    )


async def test_many_waiting_long_polls_cost_redis_one_watchers_reads(
    questions: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, app = questions
    redis = app.state.runtime.redis
    qid = await ask(http)
    waiters = [asyncio.ensure_future(poll_until_past(http, 0)) for _ in range(WAITERS)]
    await asyncio.sleep(0.3)  # every poll is waiting
    await redis.config_resetstat()
    await asyncio.sleep(3)
    # Before, each waiting request read the counter every 50 ms: ~60 GETs each in 3 s,
    # 1200 for 20. One watcher makes a blocking read of the signal and a GET each second
    # (one per waiter would be 120).
    assert await visibility_calls(redis) <= 10
    assert not any(w.done() for w in waiters)
    await decide(http, qid, "hidden")
    assert await asyncio.gather(*waiters) == [1] * WAITERS


async def test_a_long_poll_with_nothing_moving_is_answered_when_its_wait_is_over(
    questions: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, _ = questions
    started = time.monotonic()
    reply = await http.get("/moderation/visibility", params={"after": 0, "wait_s": 0.5})
    assert reply.status_code == 200 and reply.json() == {"version": 0}
    assert time.monotonic() - started >= 0.5, "answered early: a web replica asks again at once"


async def test_long_polls_waiting_through_a_redis_restart_see_the_next_hide() -> None:
    # AOF on, fsync always: the restarted server has the groups, the counter and its signal.
    server = RedisServer(appendonly=True, appendfsync="always").start()
    try:
        async with in_process(create_app, server.url) as (http, app):
            watch = app.state.moderation.visibility
            qid = await ask(http)
            waiters = [asyncio.ensure_future(poll_until_past(http, 0, 60)) for _ in range(5)]
            while watch.version is None:
                await asyncio.sleep(0.02)
            server.kill()
            await asyncio.sleep(0.5)
            server.start()
            # The watcher found its blocking read cut, and is back in step on its own.
            deadline = time.monotonic() + 30
            while watch.version is None or not await app.state.runtime.is_ready():
                assert time.monotonic() < deadline, "the watcher did not get back in step"
                await asyncio.sleep(0.05)
            assert not any(w.done() for w in waiters)
            await decide(http, qid, "hidden")
            assert await asyncio.gather(*waiters) == [1] * 5
            assert watch.version == 1, "the watcher is not following the version"
    finally:
        server.cleanup()


async def test_a_stop_while_long_polls_wait_ends_the_watcher_promptly(redis_url: str) -> None:
    started = in_process(create_app, redis_url)
    http, app = await started.__aenter__()
    watch = app.state.moderation.visibility
    params = {"after": 0, "wait_s": 4}
    waiters = [asyncio.ensure_future(http.get("/moderation/visibility", params=params))]
    while watch.version is None:  # in its blocking read (10 s)
        await asyncio.sleep(0.02)
    stop = asyncio.create_task(started.__aexit__(None, None, None))
    done, _ = await asyncio.wait([stop], timeout=5)
    assert done, "the stop waited on the watcher's blocking read"
    assert all(task.done() for task in app.state.runtime._tasks), "a task outlived the stop"
    assert watch.version is None
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
