"""One watcher of the visibility version per process, however many long polls wait on it.

Each long poll of `GET /moderation/visibility` used to read the counter every 50 ms until
it moved: ~20 Redis reads a second per waiting request, for a counter that moves a few
times a day. Now the waiting requests wait on this process's watcher, which holds one
blocking read of the signal stream that queue.lua appends to in the same call as each
bump (XREAD BLOCK wakes every reader at once, and is no message that can be lost: it
reads on from the last entry id it saw), then reads the counter. Idle, it costs two
commands per `block_s` (the blocking read and a read of the counter, so a bump that came
without its signal is still seen); a bump costs the same and wakes every waiter.

It follows the version only while someone waits (and one blocking read longer, so the
waiter that asks again as soon as it is answered finds it still in step); otherwise it
sends nothing. A Redis error (a restart, a failover) puts it out of step: waiters then
wait out their time and read the counter themselves, while it tries again after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from redis.exceptions import RedisError

from shared.backoff import Backoff
from shared.logging import get_logger

log = get_logger("askdoc.questions.moderation")

#: How long one blocking read of the signal stream waits (its cost while idle: one
#: command each time it ends); kept well inside the Redis socket timeout.
BLOCK_S = 10.0
#: Pauses between attempts while Redis cannot be read (jittered, doubling up to the last).
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


class VisibilitySource(Protocol):
    """Where the version is kept, and the signal of each move."""

    async def visibility_version(self) -> int:
        """How many hides and restores the pages have taken so far."""
        ...

    async def visibility_mark(self) -> str:
        """Where the signal stream is now (its last entry id; "0-0" if it has none)."""
        ...

    async def visibility_moved(self, mark: str, block_s: float) -> str:
        """Wait up to `block_s` for a signal after `mark`; the new mark, or `mark` if none."""
        ...


class VisibilityWatch:
    """Follows the visibility version for every waiting request of this process."""

    def __init__(self, source: VisibilitySource, block_s: float = BLOCK_S) -> None:
        self.source = source
        self.block_s = block_s
        #: The version as last read, while the watcher is in step; None otherwise.
        self.version: int | None = None
        self._waiting = 0
        self._wanted = asyncio.Event()
        self._moved = asyncio.Event()

    def _publish(self, version: int | None) -> None:
        self.version = version
        # Every waiter looks again; the next ones wait on a fresh event.
        self._moved.set()
        self._moved = asyncio.Event()

    async def wait(self, after: int, wait_s: float) -> int | None:
        """The version once it is not `after`, or when `wait_s` is over (None then if the
        watcher was out of step: the caller reads the counter itself)."""
        self._waiting += 1
        self._wanted.set()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    while self.version is None or self.version == after:
                        await self._moved.wait()
            return self.version
        finally:
            self._waiting -= 1

    async def watch_visibility(self) -> None:
        """Follow the version whenever someone waits, until cancelled (the service's stop)."""
        pauses = Backoff(RETRY_FIRST_S, RETRY_MAX_S)
        try:
            while True:
                if not self._waiting:
                    await self._wanted.wait()
                try:
                    await self._follow()
                    pauses.reset()
                except (RedisError, OSError) as exc:
                    self._publish(None)
                    pause = pauses.next()
                    log.warning(
                        "visibility_follow_failed",
                        error=f"{type(exc).__name__}: {exc}"[:200],
                        retry_in_s=round(pause, 2),
                    )
                    await asyncio.sleep(pause)
                except Exception:
                    # A bug must not end the watcher for good: waiters would each wait out
                    # their time until the service restarts.
                    self._publish(None)
                    pause = pauses.next()
                    log.exception("visibility_follow_crashed", retry_in_s=round(pause, 2))
                    await asyncio.sleep(pause)
        finally:
            self.version = None  # nobody follows it any more

    async def _follow(self) -> None:
        # The mark first: a move between the two reads is then both in the version read
        # and after the mark, so the first blocking read returns at once.
        mark = await self.source.visibility_mark()
        self._publish(await self.source.visibility_version())
        while True:
            self._wanted.clear()
            mark = await self.source.visibility_moved(mark, self.block_s)
            # Read after every blocking read, signalled or not: a bump that came without
            # its signal (a replica of the former version applying a decision during a
            # rolling deploy) is seen within one `block_s`, not never.
            version = await self.source.visibility_version()
            if version != self.version:
                self._publish(version)
            if not self._waiting and not self._wanted.is_set():
                # Nobody waited through a whole blocking read: stop until someone does.
                self._publish(None)
                return
