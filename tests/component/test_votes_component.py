"""The votes service in process (create_app + ASGI) on a real redis-server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from services.votes.app import create_app
from shared import streams
from shared.events import VoteCast
from shared.redis import RedisClient
from tests.component.harness import in_process, publish_and_wait
from tests.factories import answer_posted
from tests.support import auth


@pytest.fixture
async def votes(redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    async with in_process(create_app, redis_url, rate_limit_writes=4) as pair:
        yield pair


async def an_answer(redis: RedisClient) -> str:
    aid = f"a-{uuid.uuid4().hex[:8]}"
    event = answer_posted("q1", aid, "doc1")
    await publish_and_wait(redis, event, "votes")
    return aid


async def test_a_vote_counts_once_and_lands_on_the_stream(
    votes: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, app = votes
    redis = app.state.runtime.redis
    aid = await an_answer(redis)
    for _ in range(2):
        reply = await http.put(f"/answers/{aid}/vote", json={"value": 1}, headers=auth("r1"))
        assert reply.status_code == 200
        assert reply.json() == {"answer_id": aid, "helpful": 1, "unhelpful": 0, "your_vote": 1}
    entries = await redis.xrange(streams.VOTE_CAST)
    [event] = [VoteCast.model_validate_json(fields["__data__"]) for _, fields in entries]
    assert (event.answer_id, event.helpful, event.tally_version) == (aid, 1, 1)
    tally = await http.get(f"/answers/{aid}/votes", headers=auth("r1"))
    assert tally.json()["your_vote"] == 1
    assert (await http.get(f"/answers/{aid}/votes")).json()["your_vote"] is None


async def test_refusals_map_to_their_statuses(votes: tuple[httpx.AsyncClient, FastAPI]) -> None:
    http, app = votes
    aid = await an_answer(app.state.runtime.redis)
    own = await http.put(f"/answers/{aid}/vote", json={"value": 1}, headers=auth("doc1", "doctor"))
    assert own.status_code == 403 and own.json()["error"]["code"] == "own_answer"
    missing = await http.put("/answers/nope/vote", json={"value": 1}, headers=auth("r2"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert (await http.get("/answers/nope/votes")).status_code == 404
    bad = await http.put(f"/answers/{aid}/vote", json={"value": True}, headers=auth("r2"))
    assert bad.status_code == 422


async def test_writes_past_the_limit_get_429_but_an_admins_do_not(
    votes: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, app = votes
    aid = await an_answer(app.state.runtime.redis)
    statuses = []
    for value in (1, -1, 1, -1, 1):
        reply = await http.put(f"/answers/{aid}/vote", json={"value": value}, headers=auth("r3"))
        statuses.append(reply.status_code)
    assert statuses == [200, 200, 200, 200, 429]
    assert int(reply.headers["retry-after"]) >= 1
    assert reply.json()["error"]["code"] == "rate_limited"
    for value in (1, -1, 1, -1, 1):
        admin = await http.put(
            f"/answers/{aid}/vote", json={"value": value}, headers=auth("root", "admin")
        )
        assert admin.status_code == 200


async def test_a_write_refused_by_validation_costs_no_write_budget(
    votes: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, app = votes
    aid = await an_answer(app.state.runtime.redis)
    # A 422 costs no budget (the vote counts its limit in cast_vote.lua, after validation),
    # so the four writes of the window are all still there afterwards.
    refused = [
        await http.put(f"/answers/{aid}/vote", json={"value": 2}, headers=auth("r4")),
        await http.put(f"/answers/{aid}/vote", json={}, headers=auth("r4")),
        await http.put(f"/answers/{aid}/vote", content=b"{", headers=auth("r4")),
        await http.put("/answers/no%20such/vote", json={"value": 1}, headers=auth("r4")),
    ]
    for _ in range(3):
        refused.append(
            await http.put(f"/answers/{aid}/vote", json={"value": "x"}, headers=auth("r4"))
        )
    assert [r.status_code for r in refused] == [422] * 7
    statuses = []
    for value in (1, -1, 1, -1, 1):
        reply = await http.put(f"/answers/{aid}/vote", json={"value": value}, headers=auth("r4"))
        statuses.append(reply.status_code)
    assert statuses == [200, 200, 200, 200, 429]
    # The vote's limit is counted in its own script, after validation: over the limit, a
    # malformed vote is still told what is wrong, and a well-formed one is refused.
    over = await http.put(f"/answers/{aid}/vote", json={"value": 2}, headers=auth("r4"))
    assert over.status_code == 422
    over = await http.put(f"/answers/{aid}/vote", json={"value": 1}, headers=auth("r4"))
    assert over.status_code == 429
