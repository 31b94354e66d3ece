"""The shared delivery policy against a real redis-server: ack, retry, claim, dead-letter."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import redis.asyncio as aioredis
from faststream.redis import RedisBroker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError

from shared import streams
from shared.consumer import EventConsumer
from shared.events import QuestionPosted
from shared.settings import Settings
from tests.support import RedisServer, ServiceProcess, free_port, wait_for

GROUP = "testsvc"


def question(n: int) -> QuestionPosted:
    return QuestionPosted(
        correlation_id=f"c{n}",
        producer="questions",
        question_id=f"q{n}",
        title="A question about botox",
        body="body",
        topics=["botox"],
        specialties=["dermatology"],
        asker_id="p1",
    )


def settings_for(url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": url,
        "jwt_secret": "x" * 32,
        "claim_idle_ms": 300,
        "polling_interval_ms": 20,
        "max_deliveries": 3,
        "max_records": 10,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


async def started(
    url: str,
    handler: Callable[[QuestionPosted], object],
    grace_s: float = 5,
    batch: Callable[[list[QuestionPosted]], object] | None = None,
    **overrides: object,
) -> tuple[RedisBroker, aioredis.Redis, EventConsumer]:
    settings = settings_for(url, **overrides)
    client = aioredis.Redis.from_url(url, decode_responses=True)
    broker = RedisBroker(url, graceful_timeout=grace_s)
    consumer = EventConsumer(broker, client, settings, GROUP)
    consumer.on(QuestionPosted)(handler)  # type: ignore[arg-type]
    if batch is not None:
        consumer.on_batch(QuestionPosted)(batch)  # type: ignore[arg-type]
    await consumer.ensure_groups()
    await broker.start()
    return broker, client, consumer


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def pending_count(client: aioredis.Redis) -> int:
    info = await client.xpending(streams.QUESTION_POSTED, GROUP)
    return int(info["pending"])


async def eventually(predicate: Callable[[], object], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_entries_published_before_the_first_start_are_consumed(
    redis_url: str, raw: aioredis.Redis
) -> None:
    for n in range(5):
        await raw.xadd(streams.QUESTION_POSTED, question(n).to_wire())
    seen: list[str] = []

    async def handle(event: QuestionPosted) -> None:
        seen.append(event.question_id)

    broker, client, _ = await started(redis_url, handle)
    try:
        await eventually(lambda: len(seen) == 5)
        assert sorted(seen) == [f"q{n}" for n in range(5)]
        await eventually(lambda: _zero(raw))
    finally:
        await broker.stop()
        await client.aclose()


async def _zero(raw: aioredis.Redis) -> bool:
    return await pending_count(raw) == 0


async def test_a_failed_handler_is_retried_by_the_claimer_and_acked_once_it_succeeds(
    redis_url: str, raw: aioredis.Redis
) -> None:
    attempts: Counter[str] = Counter()

    async def flaky(event: QuestionPosted) -> None:
        attempts[event.question_id] += 1
        if event.question_id == "q1" and attempts["q1"] < 3:
            raise RuntimeError("transient")

    broker, client, _ = await started(redis_url, flaky)
    try:
        for n in range(3):
            await raw.xadd(streams.QUESTION_POSTED, question(n).to_wire())
        await eventually(lambda: attempts["q1"] == 3)
        await eventually(lambda: _zero(raw))
        assert attempts["q0"] == 1 and attempts["q2"] == 1, "healthy entries are not held back"
        assert await raw.xlen(streams.DEAD_LETTER) == 0
    finally:
        await broker.stop()
        await client.aclose()


#: A claim cannot come within these tests: what runs a handler again is the reader.
NO_CLAIM = {"claim_idle_ms": 60_000}


async def test_a_handler_failing_while_redis_is_unavailable_runs_again_at_once(
    redis_url: str, raw: aioredis.Redis
) -> None:
    attempts: Counter[str] = Counter()

    async def cut_off(event: QuestionPosted) -> None:
        attempts[event.question_id] += 1
        if event.question_id == "q1" and attempts["q1"] <= 2:
            raise RedisConnectionError("Connection closed by server.")

    broker, client, _ = await started(redis_url, cut_off, **NO_CLAIM)
    try:
        for n in range(3):
            await raw.xadd(streams.QUESTION_POSTED, question(n).to_wire())
        # Well inside the 60 s claim idle time: run again in place, then acked.
        await eventually(lambda: attempts["q1"] == 3 and _zero(raw), timeout=10)
        assert attempts == {"q0": 1, "q1": 3, "q2": 1}
        assert await raw.xlen(streams.DEAD_LETTER) == 0
    finally:
        await broker.stop()
        await client.aclose()


@pytest.mark.parametrize(
    "failure",
    [KeyError("a bug, not Redis"), OutOfMemoryError("command not allowed when used memory")],
    ids=["bug", "redis_full"],
)
async def test_a_handler_failing_with_a_bug_or_on_a_full_redis_is_left_to_the_claimer(
    redis_url: str, raw: aioredis.Redis, failure: Exception
) -> None:
    """A full Redis stays full until memory is freed: no retry in place (it would hold
    each claimed entry for its whole budget), no outage logged; the claimer runs it."""
    attempts: Counter[str] = Counter()

    async def failing(event: QuestionPosted) -> None:
        attempts[event.question_id] += 1
        raise failure

    broker, client, consumer = await started(redis_url, failing, **NO_CLAIM)
    try:
        await raw.xadd(streams.QUESTION_POSTED, question(1).to_wire())
        await eventually(lambda: attempts["q1"] == 1)
        await asyncio.sleep(1.0)  # in-place retries would have run within this
        assert attempts["q1"] == 1
        assert await pending_count(raw) == 1
        assert consumer.outage.since is None and consumer.outage.failed_calls == 0
    finally:
        await broker.stop()
        await client.aclose()


async def test_a_batch_failing_while_redis_is_unavailable_runs_again_as_a_batch(
    redis_url: str, raw: aioredis.Redis
) -> None:
    batches: list[list[str]] = []
    alone: list[str] = []

    async def each(event: QuestionPosted) -> None:
        alone.append(event.question_id)

    async def cut_off(events: list[QuestionPosted]) -> None:
        batches.append([e.question_id for e in events])
        if len(batches) <= 2:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379.")

    # Published before the start: the reader takes all three in one batch.
    for n in range(3):
        await raw.xadd(streams.QUESTION_POSTED, question(n).to_wire())
    broker, client, _ = await started(redis_url, each, batch=cut_off, **NO_CLAIM)
    try:
        await eventually(lambda: len(batches) == 3 and _zero(raw), timeout=10)
        assert batches == [["q0", "q1", "q2"]] * 3
        assert alone == [], "no entry is at fault: none runs alone"
    finally:
        await broker.stop()
        await client.aclose()


async def test_a_stop_ends_the_retries_in_place_and_leaves_the_entry_pending(
    redis_url: str, raw: aioredis.Redis
) -> None:
    attempts: list[float] = []

    async def unavailable(event: QuestionPosted) -> None:
        attempts.append(asyncio.get_running_loop().time())
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379.")

    # In place for up to 30 s (half the claim idle time); the broker waits up to 30 s for
    # its handlers at a stop. Stopped, the consumer must not make it wait for either.
    broker, client, consumer = await started(redis_url, unavailable, grace_s=30, **NO_CLAIM)
    try:
        await raw.xadd(streams.QUESTION_POSTED, question(1).to_wire())
        await eventually(lambda: len(attempts) >= 2)
        stopping = asyncio.get_running_loop().time()
        consumer.stop()
        await broker.stop()
        assert asyncio.get_running_loop().time() - stopping < 10
        assert await pending_count(raw) == 1
        assert await raw.xlen(streams.DEAD_LETTER) == 0
    finally:
        await broker.stop()
        await client.aclose()


async def test_an_entry_failing_every_delivery_goes_to_the_dead_letters_with_its_count(
    redis_url: str, raw: aioredis.Redis
) -> None:
    async def broken(event: QuestionPosted) -> None:
        if event.question_id == "q7":
            raise ValueError("cannot handle q7")

    broker, client, _ = await started(redis_url, broken)
    try:
        entry_id = await raw.xadd(streams.QUESTION_POSTED, question(7).to_wire())
        await raw.xadd(streams.QUESTION_POSTED, question(8).to_wire())
        await eventually(lambda: _dead_letters(raw, 1), timeout=15)
        await eventually(lambda: _zero(raw))
        ((_, fields),) = await raw.xrange(streams.DEAD_LETTER)
        letter = json.loads(fields["__data__"])
        assert letter["entry_id"] == entry_id
        assert letter["source_stream"] == streams.QUESTION_POSTED
        assert letter["group"] == GROUP
        assert letter["delivery_count"] == 3
        assert "cannot handle q7" in letter["error"]
        assert json.loads(letter["fields"]["__data__"])["question_id"] == "q7"
    finally:
        await broker.stop()
        await client.aclose()


async def _dead_letters(raw: aioredis.Redis, n: int) -> bool:
    return await raw.xlen(streams.DEAD_LETTER) >= n


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"__data__": "not json at all"}, "Invalid JSON"),
        ({"other": "field"}, "no __data__"),
        ({"__data__": json.dumps({"event_type": "question-posted"})}, "not a valid QuestionPosted"),
        (
            {
                "__data__": question(1)
                .model_dump_json()
                .replace('"schema_version":1', '"schema_version":9')
            },
            "schema_version",
        ),
        ({"__data__": "x" * 300_000}, "bytes, over"),
    ],
    ids=["not-json", "no-data-field", "wrong-schema", "unknown-version", "oversized"],
)
async def test_poison_goes_to_the_dead_letters_at_once_while_the_rest_flows(
    redis_url: str, raw: aioredis.Redis, fields: dict[str, str], reason: str
) -> None:
    seen: list[str] = []

    async def handle(event: QuestionPosted) -> None:
        seen.append(event.question_id)

    broker, client, _ = await started(redis_url, handle)
    try:
        await raw.xadd(streams.QUESTION_POSTED, question(1).to_wire())
        await raw.xadd(streams.QUESTION_POSTED, fields)
        await raw.xadd(streams.QUESTION_POSTED, question(2).to_wire())
        await eventually(lambda: len(seen) == 2 and True)
        await eventually(lambda: _dead_letters(raw, 1))
        ((_, letter_fields),) = await raw.xrange(streams.DEAD_LETTER)
        letter = json.loads(letter_fields["__data__"])
        assert reason in letter["error"]
        assert letter["delivery_count"] == 1
        await eventually(lambda: _zero(raw))
    finally:
        await broker.stop()
        await client.aclose()


async def test_a_dead_consumers_pending_entries_are_claimed_by_a_live_one(
    redis_url: str, raw: aioredis.Redis
) -> None:
    await raw.xgroup_create(streams.QUESTION_POSTED, GROUP, id="0", mkstream=True)
    for n in range(4):
        await raw.xadd(streams.QUESTION_POSTED, question(n).to_wire())
    # A consumer that read the entries and died before acking them.
    await raw.xreadgroup(GROUP, "dead-replica", {streams.QUESTION_POSTED: ">"}, count=10)
    assert await pending_count(raw) == 4
    seen: list[str] = []

    async def handle(event: QuestionPosted) -> None:
        seen.append(event.question_id)

    broker, client, _ = await started(redis_url, handle)
    try:
        await eventually(lambda: len(seen) == 4)
        await eventually(lambda: _zero(raw))
        assert sorted(seen) == ["q0", "q1", "q2", "q3"]
    finally:
        await broker.stop()
        await client.aclose()


def test_a_service_without_redis_says_so_keeps_retrying_and_becomes_ready_when_it_appears() -> None:
    port = free_port()
    service = ServiceProcess("questions", f"redis://127.0.0.1:{port}/0").start(wait_ready=False)
    server = RedisServer(port=port)
    try:
        wait_for(lambda: _status(service.url + "/healthz") == 200, what="liveness without redis")
        assert _status(service.url + "/readyz") == 503
        wait_for(lambda: service.logs().count("redis_unreachable") >= 2, what="retry log lines")
        server.start()
        wait_for(lambda: _status(service.url + "/readyz") == 200, timeout=20, what="readiness")
        logs = service.logs()
        assert "Traceback" not in logs
        assert f"127.0.0.1:{port}" in logs
    finally:
        service.terminate()
        server.cleanup()


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.HTTPError:
        return 0
