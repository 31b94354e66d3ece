"""The replica's delivery slots: shared by all receivers, of which one host holds few."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class DeliverySlots:
    """At most `total` attempts in flight, and at most `per_host` of them to one host."""

    def __init__(self, total: int, per_host: int) -> None:
        self._all = asyncio.Semaphore(total)
        self.per_host = per_host
        self._hosts: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, host: str | None = None) -> AsyncIterator[None]:
        """One slot (of `host`'s share first, so waiting for a slow host holds no shared one)."""
        if host is None:
            async with self._all:
                yield
            return
        own, users = self._hosts.setdefault(host, (asyncio.Semaphore(self.per_host), [0]))
        users[0] += 1
        try:
            async with own, self._all:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._hosts[host]  # bounded by hosts in use, not by hosts ever seen

    def hosts_in_use(self) -> int:
        """How many hosts hold or wait for a slot now."""
        return len(self._hosts)
