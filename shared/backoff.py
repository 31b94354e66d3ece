"""Pauses between retries that grow, with jitter, for loops waiting for Redis or a peer."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError

T = TypeVar("T")


class Backoff:
    """Pauses that double from `first_s` up to `cap_s`, each drawn in [pause/2, pause].

    The jitter keeps many waiters (the replicas of a service, the handlers of a batch)
    from retrying in step when Redis comes back; `reset` after a success. A `first_s`
    above the cap starts at the cap.
    """

    def __init__(
        self,
        first_s: float,
        cap_s: float,
        unit_random: Callable[[], float] = random.random,
    ) -> None:
        if first_s <= 0 or cap_s <= 0:
            raise ValueError(f"pauses must be positive, got {first_s} and {cap_s}")
        self.first_s = min(first_s, cap_s)
        self.cap_s = cap_s
        self._random = unit_random
        self._pause = self.first_s

    def next(self) -> float:
        """The pause before the next try; the one after it is twice as long (up to the cap)."""
        pause = self._pause
        self._pause = min(pause * 2, self.cap_s)
        return pause * (0.5 + 0.5 * min(max(self._random(), 0.0), 1.0))

    def reset(self) -> None:
        """Back to the first pause (the last try worked)."""
        self._pause = self.first_s


async def until_done(
    step: Callable[[], Awaitable[T]],
    failed: str,
    log: Any,
    first_s: float = 1.0,
    cap_s: float = 60.0,
) -> T:
    """`step()` again after each Redis (or socket) error until it works; its result.

    For one-time work in the background (a data move at start): each failure is logged as
    the warning `failed`, with the pause before the next try.
    """
    pauses = Backoff(first_s, cap_s)
    while True:
        try:
            return await step()
        except (RedisError, OSError) as exc:
            delay = pauses.next()
            log.warning(failed, error=str(exc)[:200], retry_in_s=round(delay, 2))
            await asyncio.sleep(delay)
