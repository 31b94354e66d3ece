"""Trimming never drops what a group has yet to read, except at the byte ceiling."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from shared import streams
from shared.retention import Trimmer, forced_trims, group_lag
from shared.service import ServiceRuntime
from shared.settings import Settings
from tests.support import ROOT, RedisServer

STREAM = "askdoc.vote-cast"
HUGE = 1 << 40


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def fill(client: Redis, count: int, size: int = 10) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        pipe.xadd(STREAM, {"__data__": json.dumps({"n": n, "pad": "x" * size})})
    return [str(i) for i in await pipe.execute()]


async def read(client: Redis, group: str, count: int, ack: int) -> None:
    """The group is given `count` entries and acks the first `ack` of them."""
    reply = await client.xreadgroup(group, f"{group}-1", {STREAM: ">"}, count=count)
    ids = [entry_id for _, entries in reply for entry_id, _ in entries]
    if ack:
        await client.xack(STREAM, group, *ids[:ack])


async def ids_from(client: Redis, first: str) -> list[str]:
    return [entry_id for entry_id, _ in await client.xrange(STREAM, first, "+")]


async def test_a_lagging_groups_unread_and_pending_entries_survive(client: Redis) -> None:
    ids = await fill(client, 1000)
    for group in ("fast", "slow"):
        await client.xgroup_create(STREAM, group, id="0")
    await read(client, "fast", 1000, ack=1000)
    await read(client, "slow", 300, ack=250)  # 250 done, 50 pending, 700 unread

    result = await Trimmer(client).trim(STREAM, maxlen=100, max_bytes=HUGE)

    assert result.outcome == "minid" and result.floor == ids[250]
    assert result.unread_removed == 0
    assert await ids_from(client, ids[250]) == ids[250:]  # every entry slow still needs
    assert 0 < result.removed <= 250  # only what both groups are done with
    assert await client.xlen(STREAM) == 1000 - result.removed


async def test_a_group_that_read_nothing_holds_the_whole_stream(client: Redis) -> None:
    ids = await fill(client, 500)
    await client.xgroup_create(STREAM, "new", id="0")
    result = await Trimmer(client).trim(STREAM, maxlen=100, max_bytes=HUGE)
    assert (result.outcome, result.removed) == ("held", 0)
    assert await ids_from(client, "-") == ids


async def test_streams_read_by_every_group_are_trimmed_to_maxlen(client: Redis) -> None:
    ids = await fill(client, 1000)
    await client.xgroup_create(STREAM, "fast", id="0")
    await read(client, "fast", 1000, ack=1000)
    result = await Trimmer(client).trim(STREAM, maxlen=100, max_bytes=HUGE)
    assert result.outcome == "maxlen"
    length = await client.xlen(STREAM)
    assert 100 <= length < 300  # approximate (whole nodes), as MAXLEN ~ is
    assert await ids_from(client, ids[-100]) == ids[-100:]


async def test_the_byte_ceiling_trims_unread_entries_and_counts_them(
    client: Redis, redis_url: str
) -> None:
    await fill(client, 400, size=10_000)  # about 4 MB
    await client.xgroup_create(STREAM, "stuck", id="0")
    before = REGISTRY.get_sample_value("askdoc_stream_unread_trimmed_total", {"stream": STREAM})

    result = await Trimmer(client).trim(STREAM, maxlen=100_000, max_bytes=1024 * 1024)

    assert result.outcome == "ceiling" and result.unread_removed == result.removed > 0
    assert await client.memory_usage(STREAM, samples=0) <= 1024 * 1024
    after = REGISTRY.get_sample_value("askdoc_stream_unread_trimmed_total", {"stream": STREAM})
    assert after == (before or 0) + result.unread_removed
    assert await forced_trims(client, STREAM) == (1, result.unread_removed)

    shown = subprocess.run(
        [sys.executable, "-m", "askdoc_cli", "lag", "--redis-url", redis_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"trimmed {result.unread_removed} unread entries in 1 trims" in shown.stderr
    as_json = subprocess.run(
        [sys.executable, "-m", "askdoc_cli", "lag", "--json", "--redis-url", redis_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(as_json.stdout)
    assert report["unread_trimmed"] == result.unread_removed


async def test_a_service_trims_the_streams_it_writes(client: Redis, redis_url: str) -> None:
    await fill(client, 3000)
    settings = Settings(
        redis_url=redis_url,
        jwt_secret="s" * 32,  # type: ignore[arg-type]
        stream_maxlen=1000,
        trim_interval_s=0.2,
    )
    runtime = ServiceRuntime("votes", settings)  # votes writes askdoc.vote-cast
    await runtime.start()
    try:
        for _ in range(100):
            if await client.xlen(STREAM) < 1200:
                break
            await asyncio.sleep(0.1)
        assert 1000 <= await client.xlen(STREAM) < 1200
    finally:
        await runtime.stop()


async def test_after_redis_restarts_from_its_aof_a_groups_lag_is_counted_not_unknown() -> None:
    """Redis reports no lag after a restart from its AOF until a group reads the stream's
    last entry. `askdoc lag` and the services' askdoc_group_lag count it instead: a group
    catching up shows how far behind it is, not -1 (which pages "behind retention")."""
    server = RedisServer(appendonly=True, appendfsync="always").start()
    runtime = ServiceRuntime("questions", Settings(redis_url=server.url, jwt_secret="s" * 32))  # type: ignore[arg-type]
    stream = streams.DOCTOR_PROFILE_CHANGED  # questions reads it
    try:
        r = server.client()
        r.xgroup_create(stream, "questions", id="$", mkstream=True)
        ids = [r.xadd(stream, {"n": n}) for n in range(5)]
        r.xreadgroup("questions", "questions-1", {stream: ">"}, count=2)
        r.xack(stream, "questions", *ids[:2])
        assert r.xinfo_groups(stream)[0]["lag"] == 3

        server.kill()
        server.start()
        r = server.client()
        assert r.xinfo_groups(stream)[0]["lag"] is None  # what Redis says now

        report = json.loads(cli_lag(server.url, "--json"))
        (row,) = [g for s in report["streams"] if s["stream"] == stream for g in s["groups"]]
        assert (row["lag"], row["lag_at_least"], row["behind_retention"]) == (3, False, False)
        assert report["behind_retention"] is False
        table = cli_lag(server.url).splitlines()
        assert any(line.startswith(f"{stream}\tquestions\t5\t0\t3\t") for line in table)

        await runtime.export_stream_metrics(stream, "questions")
        labels = {"group": "questions", "stream": stream}
        assert REGISTRY.get_sample_value("askdoc_group_lag", labels) == 3

        # A count that stops at its limit says so.
        lag = await group_lag(
            runtime.redis,
            stream,
            r.xinfo_groups(stream)[0],
            await runtime.redis.xinfo_stream(stream),
            limit=2,
        )
        assert (lag.entries, lag.at_least) == (2, True)

        # Once the group reads the last entry, Redis counts again.
        r.xreadgroup("questions", "questions-1", {stream: ">"})
        assert r.xinfo_groups(stream)[0]["lag"] == 0
    finally:
        await runtime.redis.aclose()
        server.cleanup()


def cli_lag(redis_url: str, *args: str) -> str:
    shown = subprocess.run(
        [sys.executable, "-m", "askdoc_cli", "lag", *args, "--redis-url", redis_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    return shown.stdout
