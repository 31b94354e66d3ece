"""Redis persistence of live-stream slots: how many `/inbox/stream` a user holds open."""

from __future__ import annotations

import json
import time

from shared.redis import RedisClient

from ..scripts import lua


class StreamSlots:
    """Leased slots per user, shared by every replica; a lapsed lease frees its slot."""

    def __init__(self, redis: RedisClient, tag: str) -> None:
        self.redis = redis
        self._tag = tag
        self._script = redis.register_script(lua(__package__, "stream_slot.lua"))

    def _key(self, user_id: str) -> str:
        return f"{self._tag}:streams:{user_id}"

    async def _run(self, op: str, user_id: str, conn_id: str, lease_s: float, cap: int) -> bool:
        args = {
            "op": op,
            "id": conn_id,
            "now_ms": int(time.time() * 1000),
            "lease_ms": int(lease_s * 1000),
            "cap": cap,
        }
        return bool(await self._script(keys=[self._key(user_id)], args=[json.dumps(args)]))

    async def take(self, user_id: str, conn_id: str, lease_s: float, cap: int) -> bool:
        """Hold one more slot for `lease_s`; False when the user holds `cap` already."""
        return await self._run("take", user_id, conn_id, lease_s, cap)

    async def renew(self, user_id: str, conn_id: str, lease_s: float) -> None:
        """Extend an open stream's lease."""
        await self._run("renew", user_id, conn_id, lease_s, 0)

    async def give_back(self, user_id: str, conn_id: str) -> None:
        """Free a closed stream's slot."""
        await self._run("give", user_id, conn_id, 0, 0)
