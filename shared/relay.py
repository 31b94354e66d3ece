"""The relay: on a Redis Cluster, events written to a service's outbox reach their streams.

A Lua script can only touch keys of one hash slot. A service keeps its state in the slot
of its home stream, so an event bound for another stream (question-edited beside a
question kept in the question-posted slot) is committed, with its state, to the service's
outbox `{home}:relay` (shared/atomic.py, `relayed`). This worker drains that outbox
through the consumer group `relay`, one replica per consumer: each entry is XADDed to its
stream together with a marker in that stream's slot (shared/relay.lua), so a redelivered
outbox entry (a replica died before its XACK) is never published twice. Entries a dead
replica left pending are claimed after `claim_idle_ms`. On a standalone Redis nothing
goes through here: every key is on the one node, and events are written directly.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import RedisError, ResponseError

from shared import streams
from shared.logging import get_logger
from shared.lua import script
from shared.metrics import EVENTS_RELAYED
from shared.redis import RedisClient
from shared.settings import Settings

GROUP = "relay"
BATCH = 100
STREAM_FIELD = "stream"

log = get_logger("askdoc.relay")


def outbox_key(tag: str) -> str:
    """A service's relay outbox, in the slot of its hash tag."""
    return f"{tag}:relay"


def outboxes() -> tuple[str, ...]:
    """Every service's relay outbox (they exist on a Redis Cluster only)."""
    return tuple(outbox_key(streams.slot_tag(home)) for home in streams.HOME_STREAM.values())


class Relay:
    """Forwards a service's outbox entries to their event streams, each at most once."""

    def __init__(self, redis: RedisClient, service: str, tag: str, settings: Settings) -> None:
        self.redis = redis
        self.service = service
        self.outbox = outbox_key(tag)
        self.settings = settings
        self._forward = redis.register_script(script("shared", "relay.lua"))

    async def ensure_group(self) -> None:
        """Create the outbox and its group (from the start: nothing in it is skipped)."""
        try:
            await self.redis.xgroup_create(self.outbox, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self) -> None:
        """Claim what dead replicas left, read new entries, forward them; until cancelled."""
        consumer = self.settings.consumer_name
        while True:
            try:
                await self.ensure_group()
                while True:
                    claimed = await self.redis.xautoclaim(
                        self.outbox,
                        GROUP,
                        consumer,
                        self.settings.claim_idle_ms,
                        "0-0",
                        count=BATCH,
                    )
                    await self.forward(claimed[1])
                    reply = await self.redis.xreadgroup(
                        GROUP, consumer, {self.outbox: ">"}, count=BATCH, block=1000
                    )
                    for _, entries in reply or []:
                        await self.forward(entries)
            except (RedisError, OSError) as exc:
                log.warning("relay_failed", outbox=self.outbox, error=str(exc)[:200])
                await asyncio.sleep(1)
            except Exception as exc:  # the relay must outlive any one bug
                log.error(
                    "relay_error", outbox=self.outbox, error=f"{type(exc).__name__}: {exc}"[:300]
                )
                await asyncio.sleep(1)

    async def forward(self, entries: list[tuple[str, dict[str, str] | None]]) -> int:
        """XADD each entry to its stream (once), then XACK it; how many were published."""
        published = 0
        done = []
        for entry_id, fields in entries:
            done.append(entry_id)
            if not fields:
                continue  # trimmed away while pending: nothing left to forward
            rest = dict(fields)
            stream = rest.pop(STREAM_FIELD, None)
            if stream not in streams.ALL:
                # Only this service's own Committer writes here; say so loudly, keep going.
                log.error("relay_entry_unroutable", entry_id=entry_id)
                continue
            marker = f"{streams.slot_tag(stream)}:relayed:{self.service}:{entry_id}"
            args: list[Any] = [self.settings.dedupe_ttl_s, *_flatten(rest)]
            if await self._forward(keys=[marker, stream], args=args):
                published += 1
                EVENTS_RELAYED.labels(self.service, stream).inc()
        if done:
            await self.redis.xack(self.outbox, GROUP, *done)
        return published


def _flatten(fields: dict[str, str]) -> list[str]:
    return [part for item in fields.items() for part in item]
