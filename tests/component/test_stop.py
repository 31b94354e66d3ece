"""A service's stop ends promptly whenever it comes: still connecting, warming up, or just
ready while its watchers run their first Redis commands."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from services.questions.app import create_app
from shared.settings import Settings
from tests.component.harness import in_process
from tests.support import JWT_SECRET, WEBHOOK_SECRET_KEY

#: Far more than a stop needs (it took ~0.01 s); before the fix it never ended.
STOP_S = 10


async def stopped_in_time(stop: asyncio.Task[object]) -> bool:
    """Whether `stop` ended within STOP_S, without cancelling it (a hung stop swallowed
    its caller's cancellation, so a timeout around it never fired)."""
    done, _ = await asyncio.wait([stop], timeout=STOP_S)
    return bool(done)


async def test_a_service_stopped_as_soon_as_it_is_ready_stops_promptly_and_quietly(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Its watchers start their first Redis commands at readiness: a stop that comes then
    # used to lose the cancel of one of them (the one-test run of this file hung). A
    # consumer loop that lost its cancel read on as the broker closed its connection, and
    # FastStream logged "Message fetch error" with a traceback (~1 stop in 8).
    caplog.set_level(logging.ERROR)
    for attempt in range(40):
        started = in_process(create_app, redis_url)
        await started.__aenter__()
        stop = asyncio.create_task(started.__aexit__(None, None, None))
        assert await stopped_in_time(stop), f"the stop hung (attempt {attempt})"
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert not errors, f"attempt {attempt}: {errors}"


@pytest.mark.parametrize("after_s", [0, 0.001, 0.01, 0.05, 0.2])
async def test_a_service_stopped_while_starting_stops_promptly(
    redis_url: str, after_s: float
) -> None:
    app = create_app(Settings(redis_url=redis_url, jwt_secret=JWT_SECRET, polling_interval_ms=20))
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    await asyncio.sleep(after_s)
    stop = asyncio.create_task(lifespan.__aexit__(None, None, None))
    assert await stopped_in_time(stop), f"the stop {after_s} s into the start hung"
    assert not app.state.runtime.ready


async def test_notify_stopped_as_soon_as_it_is_ready_stops_promptly(redis_url: str) -> None:
    # notify's own loops (live hub, escalator, ...) start at readiness too, and its stop
    # awaited each once: it hung about one stop in three.
    settings = NotifySettings(  # type: ignore[call-arg]
        redis_url=redis_url,
        jwt_secret=JWT_SECRET,
        webhook_secret_key=WEBHOOK_SECRET_KEY,
        polling_interval_ms=20,
    )
    for attempt in range(20):
        app = create_notify(settings)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        while not await app.state.runtime.is_ready():
            await asyncio.sleep(0.05)
        stop = asyncio.create_task(lifespan.__aexit__(None, None, None))
        assert await stopped_in_time(stop), f"notify's stop hung (attempt {attempt})"


@pytest.mark.parametrize("failure", ["stop", "redis_error"])
async def test_a_broker_cut_short_in_its_start_is_closed(redis_url: str, failure: str) -> None:
    # A SIGTERM inside broker.start() (or a Redis error half way through it) found a
    # connection open and consume loops running, which nothing closed: the stop did not
    # know the broker had started, and a retry started a second loop beside each one.
    app = create_app(Settings(redis_url=redis_url, jwt_secret=JWT_SECRET, polling_interval_ms=20))
    runtime = app.state.runtime
    subscribers = runtime.broker.subscribers
    assert len(subscribers) >= 2
    last = subscribers[-1]
    start_last = last.start
    half_started = asyncio.Event()
    starts: list[int] = []

    async def start_then_stall() -> None:
        await start_last()
        starts.append(1)
        half_started.set()
        if failure == "redis_error" and len(starts) == 1:
            raise RedisConnectionError("lost half way through the start")
        await asyncio.sleep(3600)

    last.start = start_then_stall
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    await asyncio.wait_for(half_started.wait(), timeout=30)
    if failure == "redis_error":
        while len(starts) < 2:  # the retry, which stalls
            await asyncio.sleep(0.05)
    consuming = [task for sub in subscribers for task in getattr(sub, "tasks", ())]
    assert consuming and all(not task.done() for task in consuming)
    # One consume loop per subscriber: the retry started no second one.
    assert len(consuming) == len(subscribers)
    stop = asyncio.create_task(lifespan.__aexit__(None, None, None))
    assert await stopped_in_time(stop), "the stop hung"
    assert all(task.done() for task in consuming), "a consume loop outlived the stop"
    assert runtime.broker._connection is None, "the broker's connection was left open"
