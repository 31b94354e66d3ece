"""Redis persistence of live-stream slots: how many `/inbox/stream` a user holds open."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

from shared.redis import RedisClient

from ..scripts import lua

#: Operations per script call: a reconnect storm of thousands of streams costs a few calls.
BATCH = 500


class StreamSlots:
    """Leased slots per user, shared by every replica; a lapsed lease frees its slot.

    Concurrent operations are coalesced: whatever queued while one script call ran goes
    in the next, so a replica holding ten thousand streams needs neither ten thousand
    Redis connections when they all (re)connect nor ten thousand calls to renew them.
    """

    def __init__(self, redis: RedisClient, tag: str) -> None:
        self.redis = redis
        self._tag = tag
        self._script = redis.register_script(lua(__package__, "stream_slot.lua"))
        self._queued: list[tuple[str, dict[str, object], asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def _key(self, user_id: str) -> str:
        return f"{self._tag}:streams:{user_id}"

    def _queue(
        self, op: str, user_id: str, conn_id: str, lease_s: float, cap: int
    ) -> asyncio.Future[bool]:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        args = {"op": op, "id": conn_id, "lease_ms": int(lease_s * 1000), "cap": cap}
        self._queued.append((self._key(user_id), args, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="stream-slots")
        return done

    async def _flush(self) -> None:
        while self._queued:
            batch, self._queued = self._queued[:BATCH], self._queued[BATCH:]
            try:
                replies = await self._script(
                    keys=[key for key, _, _ in batch],
                    args=[json.dumps([args for _, args, _ in batch]), int(time.time() * 1000)],
                )
            except Exception as exc:  # each caller gets the error (RedisError, OSError)
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, _, done), reply in zip(batch, replies, strict=True):
                if not done.done():
                    done.set_result(bool(reply))

    async def take(self, user_id: str, conn_id: str, lease_s: float, cap: int) -> bool:
        """Hold one more slot for `lease_s`; False when the user holds `cap` already."""
        return await self._queue("take", user_id, conn_id, lease_s, cap)

    async def renew(self, user_id: str, conn_id: str, lease_s: float) -> None:
        """Extend an open stream's lease."""
        await self._queue("renew", user_id, conn_id, lease_s, 0)

    async def renew_all(self, streams: Sequence[tuple[str, str]], lease_s: float) -> None:
        """Extend the leases of many open streams, given as (user id, connection id).

        Straight to the script, BATCH at a time: a future per stream would make tens of
        thousands of objects that outlive a young GC pass, and the full pass they
        eventually cause stalls every stream of the replica.
        """
        lease_ms = int(lease_s * 1000)
        for start in range(0, len(streams), BATCH):
            chunk = streams[start : start + BATCH]
            await self._script(
                keys=[self._key(user) for user, _ in chunk],
                args=[
                    json.dumps(
                        [{"op": "renew", "id": conn, "lease_ms": lease_ms} for _, conn in chunk]
                    ),
                    int(time.time() * 1000),
                ],
            )

    async def give_back(self, user_id: str, conn_id: str) -> None:
        """Free a closed stream's slot."""
        await self._queue("give", user_id, conn_id, 0, 0)
