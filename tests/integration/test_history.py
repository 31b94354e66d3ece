"""History is not redone: a new group skips events older than the dedupe window, and
`askdoc dlq replay` refuses such events unless --force."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from redis.asyncio import Redis
from typer.testing import CliRunner

from askdoc_cli.main import app
from shared import streams
from shared.events import WIRE_FIELD, DeadLetter, QuestionPosted
from shared.service import ServiceRuntime
from shared.settings import Settings

DAY_MS = 86_400_000
WINDOW_S = 14 * 86400


def question(n: int, days_ago: float = 0) -> QuestionPosted:
    return QuestionPosted(
        correlation_id=f"corr-{n}",
        producer="questions",
        question_id=f"q-{n}",
        title="Cheek pulled to the side",
        body="Is there a treatment?",
        topics=["bells-palsy"],
        specialties=["neurology"],
        asker_id="p-1",
        occurred_at=datetime.now(UTC) - timedelta(days=days_ago),
    )


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def add(client: Redis, event: QuestionPosted, days_ago: float = 0) -> str:
    """XADD as the producer did `days_ago` days ago (the entry id carries the time)."""
    entry_id = "*"
    if days_ago:
        entry_id = f"{int(time.time() * 1000 - days_ago * DAY_MS)}-0"
    return str(
        await client.xadd(
            streams.QUESTION_POSTED, {WIRE_FIELD: event.model_dump_json()}, id=entry_id
        )
    )


async def handled_by_new_group(redis_url: str, group: str, expect: int) -> list[str]:
    """Start a service-like runtime whose group `group` is new; the questions it handles."""
    settings = Settings(
        redis_url=redis_url,
        jwt_secret="s" * 32,  # type: ignore[arg-type]
        dedupe_ttl_s=WINDOW_S,
        polling_interval_ms=50,
        shutdown_grace_s=2,
    )
    runtime = ServiceRuntime("answers", settings)
    runtime.consumer.group = group  # a renamed group, as a new deployment would bring
    seen: list[str] = []

    @runtime.consumer.on(QuestionPosted)
    async def record(event: QuestionPosted) -> None:
        seen.append(event.question_id)

    await runtime.start()
    try:
        for _ in range(100):
            if len(seen) >= expect and runtime.ready:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # time for anything that should not come
    finally:
        await runtime.stop()
    return seen


async def test_a_new_group_skips_events_older_than_the_dedupe_window(
    client: Redis, redis_url: str
) -> None:
    await add(client, question(1, days_ago=40), days_ago=40)
    await add(client, question(2, days_ago=20), days_ago=20)
    recent = await add(client, question(3, days_ago=2), days_ago=2)  # markers still live
    await add(client, question(4))

    seen = await handled_by_new_group(redis_url, "renamed-notify", expect=2)

    assert sorted(seen) == ["q-3", "q-4"]
    (group,) = await client.xinfo_groups(streams.QUESTION_POSTED)
    assert group["pending"] == 0
    start_ms = int(time.time() * 1000) - WINDOW_S * 1000
    assert int(recent.split("-")[0]) > start_ms


async def test_a_new_group_on_a_young_stream_reads_it_all(client: Redis, redis_url: str) -> None:
    for n in range(3):
        await add(client, question(n))
    assert sorted(await handled_by_new_group(redis_url, "fresh", expect=3)) == ["q-0", "q-1", "q-2"]
    (group,) = await client.xinfo_groups(streams.QUESTION_POSTED)
    assert group["lag"] == 0  # from 0, Redis still counts the lag


async def test_an_existing_group_is_never_moved(client: Redis, redis_url: str) -> None:
    await client.xgroup_create(streams.QUESTION_POSTED, "old", id="0", mkstream=True)
    await add(client, question(1, days_ago=30), days_ago=30)
    # The group existed before the event: a restart must read it, not skip it.
    assert await handled_by_new_group(redis_url, "old", expect=1) == ["q-1"]


def test_dlq_replay_refuses_events_older_than_the_window_unless_forced(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    old, young = question(1, days_ago=20), question(2, days_ago=1)
    ids = []
    for event in (old, young):
        letter = DeadLetter(
            correlation_id=event.correlation_id,
            producer="notify",
            source_stream=streams.QUESTION_POSTED,
            entry_id="1-0",
            group="notify",
            consumer="notify-1",
            fields=event.to_wire(),
            error="boom",
            delivery_count=5,
        )
        ids.append(str(r.xadd(streams.DEAD_LETTER, letter.to_wire())))
    runner = CliRunner()

    result = runner.invoke(app, ["dlq", "replay", "--all", "--json", "--redis-url", redis_url])
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert [x["id"] for x in outcome["replayed"]] == [ids[1]]
    (skipped,) = outcome["skipped"]
    assert skipped["id"] == ids[0] and "older than the dedupe window" in skipped["reason"]
    assert r.xlen(streams.QUESTION_POSTED) == 1

    named = runner.invoke(app, ["dlq", "replay", ids[0], "--redis-url", redis_url])
    assert named.exit_code == 0 and "--force replays it anyway" in named.stdout
    assert r.xlen(streams.QUESTION_POSTED) == 1

    forced = runner.invoke(app, ["dlq", "replay", ids[0], "--force", "--redis-url", redis_url])
    assert forced.exit_code == 0, forced.output
    assert r.xlen(streams.QUESTION_POSTED) == 2
    assert r.xrange(streams.QUESTION_POSTED)[-1][1] == old.to_wire()
