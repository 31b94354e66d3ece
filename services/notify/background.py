"""Background loops of a notify process, started once its runtime is ready."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from shared.logging import get_logger
from shared.service import end_tasks

log = get_logger("askdoc.notify")


class Readiness(Protocol):
    """The runtime, as far as the loops care: whether Redis was reached."""

    ready: bool


class Background:
    """The notifier's own loops, started once the runtime is ready, stopped before it."""

    def __init__(self, runtime: Readiness, loops: dict[str, Callable[[], Awaitable[None]]]) -> None:
        self.runtime = runtime
        self.loops = loops
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the loops in the background as soon as Redis is reachable."""
        self.tasks.append(asyncio.create_task(self._when_ready(), name="notify-background"))

    async def _when_ready(self) -> None:
        # The shared runtime exposes readiness as a flag, not an event.
        while not self.runtime.ready:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for name, loop in self.loops.items():
            self.tasks.append(asyncio.create_task(self._guard(name, loop), name=name))

    @staticmethod
    async def _guard(name: str, loop: Callable[[], Awaitable[None]]) -> None:
        # A bug in one loop must not stop the others or the service; restart it.
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background_loop_crashed", loop=name)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        """Cancel the loops, again until each has ended (a cancel can be lost)."""
        await end_tasks(self.tasks)
