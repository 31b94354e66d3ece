"""The questions' one index on a real redis-server: each listing is a prefix of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.questions.store import QuestionStore, decode_cursor, index_entry, index_member
from shared.atomic import Committer
from shared.events import QuestionPosted
from shared.ratelimit import WriteLimit

TAG = "{qidx}"


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[QuestionStore]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await client.flushdb()
    yield QuestionStore(client, Committer(client), TAG, 1000)
    await client.aclose()


async def post(
    store: QuestionStore, qid: str, ms: int, topics: list[str], specs: list[str]
) -> None:
    doc: dict[str, Any] = {
        "id": qid,
        "created_ms": ms,
        "topics": topics,
        "specialties": specs,
        "asker_id": "asker",
        "asker_role": "admin",
    }
    event = QuestionPosted(
        correlation_id="c",
        producer="questions",
        question_id=qid,
        title="A title long enough",
        body="b",
        topics=topics,
        specialties=specs,
        asker_id="asker",
    )
    result = await store.post(doc, event, None, WriteLimit(TAG, 10, 60))
    assert result.applied


async def every_id(store: QuestionStore, kind: str, slug: str, page: int) -> list[str]:
    """All ids of a listing, newest first, read `page` at a time through its cursors."""
    ids, after = [], None
    while True:
        batch, cursor = await store.list_ids(kind, slug, after, page)
        ids += batch
        if cursor is None:
            return ids
        after = decode_cursor(cursor)


async def test_each_listing_holds_its_own_questions_newest_first_across_pages(
    store: QuestionStore,
) -> None:
    # Slugs that are prefixes of one another must not read into each other's listings.
    await post(store, "q1", 1_000, ["botox"], ["plastic-surgery"])
    await post(store, "q2", 2_000, ["botox", "fillers"], ["plastic-surgery-head-and-neck"])
    await post(store, "q3", 3_000, ["fillers"], ["plastic-surgery", "dermatology"])
    await post(store, "q4", 4_000, ["botox"], ["dermatology"])
    for page in (1, 2, 3, 10):
        assert await every_id(store, "all", "", page) == ["q4", "q3", "q2", "q1"]
        assert await every_id(store, "topic", "botox", page) == ["q4", "q2", "q1"]
        assert await every_id(store, "topic", "fillers", page) == ["q3", "q2"]
        assert await every_id(store, "specialty", "plastic-surgery", page) == ["q3", "q1"]
        assert await every_id(store, "specialty", "plastic-surgery-head-and-neck", page) == ["q2"]
        assert await every_id(store, "specialty", "dermatology", page) == ["q4", "q3"]
    assert await store.list_ids("topic", "bot", None, 10) == ([], None)
    assert await store.recent_ids("topic", "botox", 2) == ["q4", "q2"]
    # One key holds every listing: a question's post is one ZADD.
    assert await store.redis.keys(f"{TAG}:idx*") == [f"{TAG}:idx"]


async def test_the_former_per_listing_keys_move_into_the_one_index(store: QuestionStore) -> None:
    redis = store.redis
    old = {
        "all": ["q1", "q2"],
        "topic:botox": ["q1", "q2"],
        "topic:fillers": ["q2"],
        "specialty:dermatology": ["q1"],
    }
    for listing, qids in old.items():
        members = [index_member({"created_ms": int(q[1:]) * 1_000, "id": q}) for q in qids]
        await redis.zadd(f"{TAG}:idx:{listing}", dict.fromkeys(members, 0))
    await redis.set(f"{TAG}:idx:topic:notes", "not an index")  # not ours to move: left be
    assert await store.migrate_indexes(batch=1) == 6
    await post(store, "q3", 3_000, ["botox"], ["dermatology"])
    assert await every_id(store, "all", "", 2) == ["q3", "q2", "q1"]
    assert await every_id(store, "topic", "botox", 1) == ["q3", "q2", "q1"]
    assert await every_id(store, "topic", "fillers", 1) == ["q2"]
    assert await every_id(store, "specialty", "dermatology", 1) == ["q3", "q1"]
    assert sorted(await redis.keys(f"{TAG}:idx*")) == [f"{TAG}:idx", f"{TAG}:idx:topic:notes"]
    assert await store.migrate_indexes() == 0  # again: nothing left to move


async def test_entries_a_former_version_adds_meanwhile_move_too(store: QuestionStore) -> None:
    # A rolling deploy: replicas of the former version keep adding to the former keys
    # after a new replica moved them; keep_migrating's later passes move those too.
    redis = store.redis

    async def old_post(qid: str) -> None:
        member = index_member({"created_ms": int(qid[1:]) * 1_000, "id": qid})
        await redis.zadd(f"{TAG}:idx:all", {member: 0})
        await redis.zadd(f"{TAG}:idx:topic:botox", {member: 0})

    await old_post("q1")
    assert await store.migrate_indexes() == 2
    await old_post("q2")  # after the move at start
    assert await every_id(store, "all", "", 10) == ["q1"]
    await store.keep_migrating(after_s=(0.0, 0.0))
    assert await every_id(store, "all", "", 10) == ["q2", "q1"]
    assert await every_id(store, "topic", "botox", 10) == ["q2", "q1"]
    assert await redis.keys(f"{TAG}:idx*") == [f"{TAG}:idx"]


async def scans(store: QuestionStore) -> int:
    """How many SCAN calls the server has answered since its stats were reset."""
    stats = await store.redis.info("commandstats")
    return int(stats.get("cmdstat_scan", {}).get("calls", 0))


async def test_a_finished_move_is_found_without_scanning(store: QuestionStore) -> None:
    # keep_migrating runs a pass six times per replica; once the move is done each costs
    # one round trip (the marker and the former "all" key), not a SCAN of the keyspace.
    redis = store.redis
    member = index_member({"created_ms": 1_000, "id": "q1"})
    await redis.zadd(f"{TAG}:idx:all", {member: 0})
    assert await store.migrate_indexes() == 1  # moved: not yet known to be finished
    assert await store.migrate_indexes() == 0  # found nothing left: finished
    await redis.config_resetstat()
    for _ in range(6):
        assert await store.migrate_indexes() == 0
    assert await scans(store) == 0
    # A replica of the former version posts again: the next pass scans and moves it.
    member2 = index_member({"created_ms": 2_000, "id": "q2"})
    await redis.zadd(f"{TAG}:idx:all", {member2: 0})
    await redis.zadd(f"{TAG}:idx:topic:botox", {member2: 0})
    assert await store.migrate_indexes() == 2
    assert await scans(store) > 0
    assert await every_id(store, "topic", "botox", 10) == ["q2"]


async def test_a_pass_that_found_nothing_does_not_mark_the_move_finished_if_one_moved_meanwhile(
    store: QuestionStore,
) -> None:
    # Two replicas' passes at once, while a replica of the former version posts: one pass
    # moves the former "all" key but missed the topic key the post created behind its
    # scan; the other found nothing. Marked finished, the topic key would never move.
    redis = store.redis
    assert await store.migrate_indexes() == 0  # an empty store: finished
    marker = f"{TAG}:index-migrated"
    await redis.set(marker, "pass:other")  # the pass that will find nothing began
    member = index_member({"created_ms": 1_000, "id": "q1"})
    await redis.zadd(f"{TAG}:idx:all", {member: 0})
    await redis.zadd(f"{TAG}:idx:topic:botox", {member: 0})
    # The first pass moves only "all" (its scan had passed the topic key's slot).
    prefix = index_entry("all", "", "")
    keys = [f"{TAG}:idx:all", f"{TAG}:idx", marker]
    assert await store._move_index(keys=keys, args=[prefix, 10])
    # The other pass ends having found nothing: it must not mark the move finished.
    assert not await store._finish_migration(keys=[marker], args=["pass:other", "done"])
    assert await store.migrate_indexes() == 1  # so the next pass scans and moves the rest
    assert await every_id(store, "topic", "botox", 10) == ["q1"]
