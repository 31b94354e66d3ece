"""The delivery outbox: one stream entry per notification with external channels.

The outbox lives in the notification-sent slot, so an entry is written in the same
commit as its inbox item and nothing is lost between the commit and the send.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.exceptions import ResponseError

from shared import streams, tracing
from shared.atomic import Committer, Txn
from shared.events import DeadLetter
from shared.logging import current_correlation_id
from shared.redis import RedisClient

OUTBOX_GROUP = "notify"
Entry = tuple[str, dict[str, str]]


class OutboxStore:
    """The outbox stream and its consumer group."""

    def __init__(
        self,
        redis: RedisClient,
        tag: str,
        maxlen: int,
        committer: Committer | None = None,
        dedupe_ttl_s: int = 14 * 86400,
    ) -> None:
        self.redis = redis
        self.maxlen = maxlen
        self.committer = committer or Committer(redis)
        self.dedupe_ttl_s = dedupe_ttl_s
        self._key = f"{tag}:outbox"

    @property
    def stream(self) -> str:
        """The outbox stream's key (trimmed by the runtime like the event streams)."""
        return self._key

    def enqueue(self, txn: Txn, nid: str, recipient: str, channels: Sequence[str]) -> Txn:
        """Add to `txn`: the entry that has `channels` deliver notification `nid`."""
        return txn.call(
            "XADD",
            self._key,
            # No MAXLEN: the runtime's trimmer never cuts what the worker has not read.
            "*",
            "nid",
            nid,
            "recipient",
            recipient,
            "channels",
            ",".join(channels),
            *trace_fields(),
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

    async def read_own(self, consumer: str, count: int) -> list[Entry]:
        """Entries handed to this consumer and not acked yet, oldest first (an entry
        trimmed away meanwhile comes with no fields)."""
        reply = await self.redis.xreadgroup(OUTBOX_GROUP, consumer, {self._key: "0"}, count=count)
        return [(i, f or {}) for _, entries in reply or [] for i, f in entries]

    async def claim(self, consumer: str, idle_ms: int, count: int) -> list[Entry]:
        """Entries left pending longer than `idle_ms` by a worker that died."""
        _, entries, *_ = await self.redis.xautoclaim(
            self._key, OUTBOX_GROUP, consumer, idle_ms, "0-0", count=count
        )
        return list(entries)

    async def ack(self, entry_id: str) -> None:
        """The entry is done (delivered, or final on every channel)."""
        await self.redis.xack(self._key, OUTBOX_GROUP, entry_id)

    async def deliveries(self, entry_id: str) -> int:
        """How many times the entry was handed to a worker (read or claimed)."""
        pending = await self.redis.xpending_range(self._key, OUTBOX_GROUP, entry_id, entry_id, 1)
        return int(pending[0]["times_delivered"]) if pending else 1

    async def keep(self, consumer: str, entry_id: str) -> None:
        """Reset the entry's idle time while this worker still waits to retry it, so no
        other replica claims it (JUSTID leaves its delivery count as it is)."""
        await self.redis.xclaim(self._key, OUTBOX_GROUP, consumer, 0, [entry_id], justid=True)

    async def dead_letter(
        self, consumer: str, entry_id: str, fields: dict[str, str], error: str, deliveries: int
    ) -> None:
        """Move a failing entry to askdoc.dead-letter (once per entry), then ack it."""
        letter = DeadLetter(
            correlation_id=current_correlation_id(),
            producer="notify",
            source_stream=self._key,
            entry_id=entry_id,
            group=OUTBOX_GROUP,
            consumer=consumer,
            fields={k: v[:4096] for k, v in fields.items()},
            error=error[:1000],
            delivery_count=deliveries,
        )
        # The marker keeps the letter unique even if we die between it and the XACK.
        marker = f"{streams.slot_tag(streams.DEAD_LETTER)}:dlq:outbox:{self._key}:{entry_id}"
        txn = Txn().absent("dead_letter", marker, ttl_s=self.dedupe_ttl_s)
        await self.committer.commit(txn.publish(letter))
        await self.ack(entry_id)


def trace_fields() -> list[str]:
    """An outbox entry's trace fields: the send continues the trace of the handling that
    queued it."""
    parent = tracing.traceparent()
    return ["traceparent", parent] if parent else []
