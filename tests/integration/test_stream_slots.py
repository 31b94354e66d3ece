"""Live-stream slots against a real redis-server: batched takes, renewals and give-backs
keep each user's cap, and a reconnect storm needs no more connections than the pool has."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from services.notify.inbox.slots import BATCH, StreamSlots

TAG = "{askdoc.notification-sent}"


async def test_a_storm_of_streams_opening_at_once_fits_a_small_pool(redis_url: str) -> None:
    # redis-py refuses a command beyond its pool (100 by default) instead of waiting:
    # a stream each would 503 most of a reconnect storm.
    client = aioredis.Redis.from_url(redis_url, decode_responses=True, max_connections=4)
    slots = StreamSlots(client, TAG)
    n = 3 * BATCH
    taken = await asyncio.gather(*(slots.take(f"dr-{i}", f"c{i}", 30, 5) for i in range(n)))
    assert all(taken)
    assert await client.zcard(f"{TAG}:streams:dr-7") == 1
    await asyncio.gather(*(slots.give_back(f"dr-{i}", f"c{i}") for i in range(n)))
    assert await client.exists(f"{TAG}:streams:dr-7") == 0
    await client.aclose()


async def test_takes_in_one_batch_still_keep_the_cap(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    slots = StreamSlots(client, TAG)
    taken = await asyncio.gather(*(slots.take("dr-one", f"c{i}", 30, 2) for i in range(6)))
    assert sorted(taken) == [False] * 4 + [True] * 2
    await slots.give_back("dr-one", f"c{taken.index(True)}")
    assert await slots.take("dr-one", "c-later", 30, 2)
    await client.aclose()


async def test_renewed_leases_stay_and_lapsed_ones_free_their_slot(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    slots = StreamSlots(client, TAG)
    assert await slots.take("dr-kept", "kept", 0.3, 1)
    assert await slots.take("dr-gone", "gone", 0.3, 1)  # its replica died: never renewed
    await asyncio.sleep(0.2)
    await slots.renew_all([("dr-kept", "kept")] * (BATCH + 1), 30)  # more than one call
    await asyncio.sleep(0.2)
    assert not await slots.take("dr-kept", "another", 30, 1)
    assert await slots.take("dr-gone", "another", 30, 1)
    await client.aclose()
