"""The delivery outbox: one stream entry per notification with external channels.

The outbox lives in the notification-sent slot, so an entry is written in the same
commit as its inbox item and nothing is lost between the commit and the send.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.exceptions import ResponseError

from shared.atomic import Txn
from shared.redis import RedisClient

OUTBOX_GROUP = "notify"
Entry = tuple[str, dict[str, str]]


class OutboxStore:
    """The outbox stream and its consumer group."""

    def __init__(self, redis: RedisClient, tag: str, maxlen: int) -> None:
        self.redis = redis
        self.maxlen = maxlen
        self._key = f"{tag}:outbox"

    def enqueue(self, txn: Txn, nid: str, recipient: str, channels: Sequence[str]) -> Txn:
        """Add to `txn`: the entry that has `channels` deliver notification `nid`."""
        return txn.call(
            "XADD",
            self._key,
            "MAXLEN",
            "~",
            self.maxlen,
            "*",
            "nid",
            nid,
            "recipient",
            recipient,
            "channels",
            ",".join(channels),
        )

    async def ensure_group(self) -> None:
        """Create the outbox stream and its consumer group (idempotent)."""
        try:
            await self.redis.xgroup_create(self._key, OUTBOX_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        """New entries for this consumer (waits up to `block_ms` for one)."""
        reply = await self.redis.xreadgroup(
            OUTBOX_GROUP, consumer, {self._key: ">"}, count=count, block=block_ms
        )
        return [entry for _, entries in reply or [] for entry in entries]

    async def claim(self, consumer: str, idle_ms: int, count: int) -> list[Entry]:
        """Entries left pending longer than `idle_ms` by a worker that died."""
        _, entries, *_ = await self.redis.xautoclaim(
            self._key, OUTBOX_GROUP, consumer, idle_ms, "0-0", count=count
        )
        return list(entries)

    async def ack(self, entry_id: str) -> None:
        """The entry is done (delivered, or final on every channel)."""
        await self.redis.xack(self._key, OUTBOX_GROUP, entry_id)
