"""The visibility watch (services/questions/moderation/watch.py) against the fake store:
one follower however many long polls wait, which wakes them all, stops when nobody waits,
and gets back in step after a Redis error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import ConnectionError as RedisConnectionError

from services.questions.moderation.watch import VisibilityWatch
from shared.events import ModerationDecided
from shared.service import end_tasks
from tests.unit.moderation_fakes import FakeModerationStore

WAITERS = 50


def decided(version: int) -> ModerationDecided:
    return ModerationDecided(
        correlation_id="c1",
        producer="questions",
        item_kind="question",
        item_id="q1",
        question_id="q1",
        author_id="pat",
        decision="hidden" if version % 2 else "restored",
        reason="spam",
        decision_version=version,
    )


@asynccontextmanager
async def following(store: FakeModerationStore, block_s: float) -> AsyncIterator[VisibilityWatch]:
    """A watch whose `watch_visibility` goes on as the service's background work does."""
    watch = VisibilityWatch(store, block_s)
    task = asyncio.create_task(watch.watch_visibility())
    try:
        yield watch
    finally:
        await end_tasks([task])
    assert watch.version is None, "a stopped watch claims to be in step"


async def test_many_waiters_share_one_follower_and_all_wake_on_a_move() -> None:
    store = FakeModerationStore()
    async with following(store, block_s=5) as watch:
        waits = [asyncio.ensure_future(watch.wait(0, 3)) for _ in range(WAITERS)]
        await asyncio.sleep(0.2)
        assert not any(w.done() for w in waits)
        started = time.monotonic()
        await store.project_decision(decided(1))
        assert await asyncio.gather(*waits) == [1] * WAITERS
        assert time.monotonic() - started < 1, "woken by the move, not at the end of 3 s"
        # One mark, one blocking read that the move ended, and a version read before and
        # after it: the store's traffic of one follower, not one per waiter.
        assert store.visibility_calls == {"mark": 1, "version": 2, "moved": 2}


async def test_a_waiter_answers_at_once_when_the_version_already_moved() -> None:
    store = FakeModerationStore()
    await store.project_decision(decided(1))
    async with following(store, block_s=5) as watch:
        assert await asyncio.wait_for(watch.wait(0, 3), timeout=1) == 1
        # Still in step: the next waiter is answered from memory, with no read at all.
        calls = dict(store.visibility_calls)
        assert await watch.wait(7, 3) == 1
        assert store.visibility_calls == calls


async def test_an_unchanged_version_is_answered_when_the_wait_is_over() -> None:
    store = FakeModerationStore()
    async with following(store, block_s=5) as watch:
        started = time.monotonic()
        assert await watch.wait(0, 0.3) == 0
        assert time.monotonic() - started >= 0.3


async def test_the_follower_stops_reading_once_nobody_waits() -> None:
    store = FakeModerationStore()
    async with following(store, block_s=0.1) as watch:
        assert await watch.wait(0, 0.05) == 0
        await asyncio.sleep(0.5)  # one more blocking read after the last waiter, then none
        calls = dict(store.visibility_calls)
        assert watch.version is None
        await asyncio.sleep(0.5)
        assert store.visibility_calls == calls, "the follower read on with nobody waiting"
        # The next waiter starts it again.
        await store.project_decision(decided(1))
        assert await asyncio.wait_for(watch.wait(0, 3), timeout=1) == 1


async def test_a_waiter_without_a_follower_in_step_gets_none_when_its_wait_is_over() -> None:
    # Not started yet (before readiness): the service reads the counter itself then.
    watch = VisibilityWatch(FakeModerationStore(), block_s=5)
    started = time.monotonic()
    assert await watch.wait(0, 0.2) is None
    assert time.monotonic() - started >= 0.2, "answered early: the web would ask again at once"


async def test_a_move_without_its_signal_is_seen_after_one_blocking_read() -> None:
    # A replica of the former version applies a decision during a rolling deploy: it bumps
    # the counter and appends no signal.
    store = FakeModerationStore()
    async with following(store, block_s=0.2) as watch:
        waiting = asyncio.ensure_future(watch.wait(0, 3))
        await asyncio.sleep(0.05)
        store.visibility = 1
        assert await asyncio.wait_for(waiting, timeout=2) == 1


async def test_the_follower_gets_back_in_step_after_a_redis_error() -> None:
    store = FakeModerationStore()
    failures = [RedisConnectionError("Connection closed by server.")] * 2
    moved = store.visibility_moved

    async def fails_twice(mark: str, block_s: float) -> str:
        if failures:
            raise failures.pop()
        return await moved(mark, block_s)

    store.visibility_moved = fails_twice  # type: ignore[method-assign]
    async with following(store, block_s=5) as watch:
        waiting = asyncio.ensure_future(watch.wait(0, 5))
        while failures:
            await asyncio.sleep(0.01)
        await store.project_decision(decided(1))
        started = time.monotonic()
        assert await asyncio.wait_for(waiting, timeout=4) == 1
        # Back in step after two short pauses, not at the end of the waiter's time.
        assert time.monotonic() - started < 3
