"""Riding out a Redis blip: which errors mean Redis is away, one log line each way for an
outage, and Redis steps run again in place until Redis is back or a deadline passes.

The event consumers (`shared.consumer`) and notify's delivery worker use them alike: a
step that failed because Redis is away (down, restarting, loading its AOF) is run again
after short jittered pauses, for as long as the work is still ours (before a claim could
hand it to another consumer), so what was in flight when Redis blinked goes on as soon
as it is back rather than a claim time later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis import exceptions as redis_errors

from shared.backoff import Backoff
from shared.logging import get_logger
from shared.metrics import RETRIED_IN_PLACE

T = TypeVar("T")

log = get_logger("askdoc.consumer")

# Redis full (noeviction at maxmemory), unreachable or loading is no fault of the work:
# it is retried, never dead-lettered for it (a near-full Redis could refuse the handler's
# write yet take the dead letter's).
# Of those, Redis gone for a moment (a restart, a failover, a dropped connection, loading
# its data): a step retried in place a moment later may well work, and these mark an
# outage. A full Redis is not one: it lasts until memory is freed while reads keep
# working, so retrying every entry in place only slowed the claimer's rounds (each claimed
# entry spent its whole budget) and logged an outage begun and ended at every read and
# refused write.
REDIS_AWAY = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
)
REDIS_UNAVAILABLE = (redis_errors.OutOfMemoryError, *REDIS_AWAY)

#: A step that failed for Redis being away is retried in place for at most this share of
#: the claim idle time from when the work was last ours for sure (delivered, claimed,
#: kept): a claim takes an entry idle that long, and the rest leaves the last run time to
#: end first.
RETRY_IN_PLACE_SHARE = 0.5
#: The pauses between those runs: the first, doubling up to the cap (each jittered).
RETRY_PAUSE_FIRST_S = 0.05
RETRY_PAUSE_CAP_S = 1.0


class RedisOutage:
    """Logs once that a service's consumers lost Redis, and once that they have it back.

    While Redis is down every handler in flight and every consume loop fails, many times
    over (retries); one line each way says it, with how long and how many calls failed.
    """

    def __init__(self, group: str) -> None:
        self.group = group
        self.since: float | None = None
        self.failed_calls = 0

    def failed(self, exc: BaseException) -> None:
        """A consumer's Redis call failed for Redis being unavailable."""
        self.failed_calls += 1
        if self.since is None:
            self.since = time.monotonic()
            log.warning(
                "consumers_lost_redis", group=self.group, error=f"{type(exc).__name__}: {exc}"[:200]
            )

    def worked(self, started: float) -> None:
        """A consumer's Redis call begun at `started` (monotonic time) worked."""
        # One begun before the first failure proves nothing about Redis now.
        if self.since is None or started < self.since:
            return
        log.info(
            "consumers_have_redis_again",
            group=self.group,
            down_s=round(time.monotonic() - self.since, 2),
            failed_calls=self.failed_calls,
        )
        self.since = None
        self.failed_calls = 0


class RetryInPlace:
    """Runs a step again in place while it fails because Redis is away, until a deadline
    or the stop; counts each failure and success in `outage`."""

    def __init__(self, outage: RedisOutage, group: str) -> None:
        self.outage = outage
        self.group = group
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """No more retries: a step waiting to run again gives up (raises) at once."""
        self._stopping.set()

    async def run(self, step: Callable[[], Awaitable[T]], deadline: float, stream: str) -> T:
        """`step()`, and while it fails because Redis is away, again after a short jittered
        pause, until `deadline` (monotonic time) or the stop; then it raises."""
        pauses = Backoff(RETRY_PAUSE_FIRST_S, RETRY_PAUSE_CAP_S)
        while True:
            started = time.monotonic()
            try:
                result = await step()
            except REDIS_AWAY as exc:
                self.outage.failed(exc)
                pause = pauses.next()
                if self._stopping.is_set() or time.monotonic() + pause >= deadline:
                    raise
                await self._pause(pause)
                if self._stopping.is_set():
                    raise
                RETRIED_IN_PLACE.labels(self.group, stream).inc()
                continue
            self.outage.worked(started)
            return result

    async def _pause(self, seconds: float) -> None:
        """Sleep, or less if stopped meanwhile."""
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            pass
