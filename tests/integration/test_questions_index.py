"""The questions' one index on a real redis-server: each listing is a prefix of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.questions.store import QuestionStore, decode_cursor, index_member
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
