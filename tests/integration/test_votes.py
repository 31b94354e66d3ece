"""The votes service as a real process on a real Redis: vote rules, the atomic vote
script under concurrency, and the vote-cast events as any Redis client reads them."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
import redis.asyncio

from services.votes.domain import VALUES, Vote, apply_vote
from services.votes.store import VoteOutcome, VoteStore
from shared import streams
from shared.atomic import Committer
from shared.events import AnswerPosted, DoctorCard, VoteCast
from shared.redis import RedisClient
from tests.factories import moderation_decided
from tests.support import RedisServer, ServiceProcess, auth, service_on_own_redis, wait_for


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[RedisServer, ServiceProcess]]:
    with service_on_own_redis("votes") as pair:
        yield pair


@pytest.fixture
def r(stack: tuple[RedisServer, ServiceProcess]) -> RedisClient:
    return stack[0].client()


@pytest.fixture
async def http(stack: tuple[RedisServer, ServiceProcess]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack[1].url, timeout=10) as client:
        yield client


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def answer_posted(doctor_id: str) -> AnswerPosted:
    now = datetime.now(UTC)
    return AnswerPosted(
        correlation_id=uid("c"),
        producer="answers",
        answer_id=uid("a"),
        question_id=uid("q"),
        body="Botox in the depressor muscles can soften the pull.",
        doctor=DoctorCard(id=doctor_id, name="Jon A. Perlman"),
        created_at=now,
    )


def answer(r: RedisClient, stack: tuple[RedisServer, ServiceProcess]) -> AnswerPosted:
    """Post an answer on the stream and wait until votes knows it."""
    event = answer_posted(uid("doc"))
    r.xadd(event.stream, event.to_wire())
    url = f"{stack[1].url}/answers/{event.answer_id}/votes"
    wait_for(lambda: httpx.get(url).status_code == 200, 10, what="votes to project the answer")
    return event


def cast_events(r: RedisClient, answer_id: str) -> list[VoteCast]:
    """The vote-cast entries of one answer in stream order, read with plain redis-py."""
    events = [
        VoteCast.model_validate_json(fields["__data__"])
        for _, fields in r.xrange(streams.VOTE_CAST)
    ]
    return [e for e in events if e.answer_id == answer_id]


async def vote(
    http: httpx.AsyncClient, answer_id: str, voter: str, value: object
) -> httpx.Response:
    return await http.put(f"/answers/{answer_id}/vote", json={"value": value}, headers=auth(voter))


@pytest.fixture
def posted(r: RedisClient, stack: tuple[RedisServer, ServiceProcess]) -> AnswerPosted:
    return answer(r, stack)


async def test_vote_change_retract_and_repeat(
    r: RedisClient, http: httpx.AsyncClient, posted: AnswerPosted
) -> None:
    aid, voter = posted.answer_id, uid("reader")
    steps = [
        (1, {"helpful": 1, "unhelpful": 0}, 1),
        (1, {"helpful": 1, "unhelpful": 0}, 1),  # a repeat publishes nothing
        (-1, {"helpful": 0, "unhelpful": 1}, 2),  # a change moves the counts
        (0, {"helpful": 0, "unhelpful": 0}, 3),  # a retraction
        (0, {"helpful": 0, "unhelpful": 0}, 3),
    ]
    for value, counts, entries in steps:
        resp = await vote(http, aid, voter, value)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"answer_id": aid, **counts, "your_vote": value}
        assert len(cast_events(r, aid)) == entries
    events = cast_events(r, aid)
    assert [(e.previous_value, e.value) for e in events] == [(0, 1), (1, -1), (-1, 0)]
    assert [e.tally_version for e in events] == [1, 2, 3]
    first = events[0]
    assert (first.question_id, first.doctor_id, first.voter_id) == (
        posted.question_id,
        posted.doctor.id,
        voter,
    )
    assert first.producer == "votes"


async def test_the_tally_shows_your_vote_only_when_signed_in(
    http: httpx.AsyncClient, posted: AnswerPosted
) -> None:
    aid, voter = posted.answer_id, uid("reader")
    await vote(http, aid, voter, -1)
    await vote(http, aid, uid("reader"), 1)
    anonymous = (await http.get(f"/answers/{aid}/votes")).json()
    assert anonymous == {"answer_id": aid, "helpful": 1, "unhelpful": 1, "your_vote": None}
    mine = (await http.get(f"/answers/{aid}/votes", headers=auth(voter))).json()
    assert mine["your_vote"] == -1
    other = (await http.get(f"/answers/{aid}/votes", headers=auth(uid("reader")))).json()
    assert other["your_vote"] == 0


async def test_no_vote_on_ones_own_answer(
    r: RedisClient, http: httpx.AsyncClient, posted: AnswerPosted
) -> None:
    resp = await http.put(
        f"/answers/{posted.answer_id}/vote",
        json={"value": 1},
        headers=auth(posted.doctor.id, "doctor"),
    )
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "own_answer"
    assert cast_events(r, posted.answer_id) == []
    # Another doctor may vote.
    other = await http.put(
        f"/answers/{posted.answer_id}/vote", json={"value": 1}, headers=auth(uid("doc"), "doctor")
    )
    assert other.json()["helpful"] == 1


async def test_unknown_answers_anonymous_voters_and_bad_values(
    r: RedisClient, http: httpx.AsyncClient, posted: AnswerPosted
) -> None:
    assert (await vote(http, "a-nope", uid("reader"), 1)).status_code == 404
    assert (await http.get("/answers/a-nope/votes")).status_code == 404
    anonymous = await http.put(f"/answers/{posted.answer_id}/vote", json={"value": 1})
    assert anonymous.status_code == 401
    for bad in (2, -2, "1", True, 1.0, None):
        resp = await vote(http, posted.answer_id, uid("reader"), bad)
        assert resp.status_code == 422, (bad, resp.text)
    assert cast_events(r, posted.answer_id) == []


async def test_fifty_concurrent_voters_are_all_counted_once(
    r: RedisClient, http: httpx.AsyncClient, posted: AnswerPosted
) -> None:
    aid = posted.answer_id
    replies = await asyncio.gather(*(vote(http, aid, f"reader-{i}", 1) for i in range(50)))
    assert {resp.status_code for resp in replies} == {200}
    tally = (await http.get(f"/answers/{aid}/votes")).json()
    assert (tally["helpful"], tally["unhelpful"]) == (50, 0)
    events = cast_events(r, aid)
    assert len(events) == 50
    assert [e.tally_version for e in events] == list(range(1, 51))
    assert [e.helpful for e in events] == list(range(1, 51))
    assert {e.voter_id for e in events} == {f"reader-{i}" for i in range(50)}


async def test_a_burst_larger_than_the_redis_pool_waits_for_connections(
    http: httpx.AsyncClient, posted: AnswerPosted
) -> None:
    """400 voters at once against a pool of 100 Redis connections (the default): each
    vote waits for a free connection. redis-py's default pool answered 3 in 4 of them
    503 at once (MaxConnectionsError)."""
    aid = posted.answer_id
    voters = 400
    limits = httpx.Limits(max_connections=None)
    async with httpx.AsyncClient(base_url=str(http.base_url), timeout=60, limits=limits) as burst:
        replies = await asyncio.gather(*(vote(burst, aid, f"burst-{i}", 1) for i in range(voters)))
    assert Counter(resp.status_code for resp in replies) == {200: voters}
    tally = (await http.get(f"/answers/{aid}/votes")).json()
    assert tally["helpful"] == voters


async def test_with_every_connection_busy_past_the_pool_timeout_a_request_gets_503() -> None:
    """Waiting for a connection is bounded: Redis paused, a pool of 2 and a 0.5 s wait give
    the requests beyond the pool a 503 with Retry-After soon, not a hang until Redis."""
    with service_on_own_redis(
        "votes", ASKDOC_REDIS_MAX_CONNECTIONS="2", ASKDOC_REDIS_POOL_TIMEOUT_S="0.5"
    ) as (server, service):
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            server.client().execute_command("CLIENT", "PAUSE", "4000", "ALL")
            started = time.monotonic()

            async def read() -> tuple[httpx.Response, float]:
                reply = await client.get("/answers/a-unknown/votes", headers=auth("reader"))
                return reply, time.monotonic() - started

            replies = await asyncio.gather(*(read() for _ in range(10)))
    refused = [(r, at) for r, at in replies if r.status_code == 503]
    assert len(refused) >= 8, [r.status_code for r, _ in replies]
    for reply, at in refused:
        assert reply.json()["error"]["code"] == "unavailable"
        assert reply.headers["retry-after"] == "1"
        assert at < 3.5, "refused after the pool timeout, before Redis came back"
    assert "No connection available" in service.logs()


async def test_vote_cast_is_plain_json_even_with_slashes(
    r: RedisClient, http: httpx.AsyncClient, posted: AnswerPosted
) -> None:
    # cjson writes '/' as '\/'; the entry must still be the same JSON to any reader.
    # (A voter is a token's sub, an id: '/' and non-ASCII reach the script only in the
    # request id.)
    voter = "org.team|reader@clinic"
    resp = await http.put(
        f"/answers/{posted.answer_id}/vote",
        json={"value": -1},
        headers={**auth(voter), "X-Request-ID": "req/1/a//b"},
    )
    assert resp.status_code == 200
    [event] = cast_events(r, posted.answer_id)
    assert event.voter_id == voter
    assert event.value == -1 and event.unhelpful == 1
    assert event.correlation_id == "req/1/a//b"
    raws = [f["__data__"] for _, f in r.xrange(streams.VOTE_CAST)]
    [doc] = [d for d in map(json.loads, raws) if d["answer_id"] == posted.answer_id]
    assert doc["voter_id"] == voter and doc["correlation_id"] == "req/1/a//b"


async def test_the_vote_script_agrees_with_the_rule_on_all_nine_transitions(
    r: RedisClient, stack: tuple[RedisServer, ServiceProcess]
) -> None:
    client = redis.asyncio.Redis.from_url(stack[0].url, decode_responses=True)
    store = VoteStore(client, Committer(client, None), streams.slot_tag(streams.VOTE_CAST), 1000)
    try:
        for previous, new in itertools.product(VALUES, VALUES):
            posted = answer_posted(uid("doc"))
            aid, voter = posted.answer_id, uid("reader")

            async def cast(who: str, value: Vote, posted: AnswerPosted = posted) -> VoteOutcome:
                outcome = await store.cast(
                    VoteCast(
                        correlation_id="c",
                        producer="votes",
                        answer_id=posted.answer_id,
                        question_id=posted.question_id,
                        doctor_id=posted.doctor.id,
                        voter_id=who,
                        value=value,
                        helpful=0,
                        unhelpful=0,
                        tally_version=1,
                    )
                )
                assert outcome is not None
                return outcome

            # Other readers first, so a decrement has something to take from.
            others: tuple[Vote, ...] = (1, 1, 1, -1, -1)
            for i, value in enumerate(others):
                await cast(f"other-{i}", value)
            await cast(voter, previous)
            before = cast_events(r, aid)
            helpful, unhelpful = before[-1].helpful, before[-1].unhelpful
            version = before[-1].tally_version

            outcome = await cast(voter, new)
            expected = apply_vote(previous, new, helpful, unhelpful)
            assert (outcome.helpful, outcome.unhelpful, outcome.changed) == expected
            assert outcome.previous == previous
            after = cast_events(r, aid)
            if expected[2]:
                assert len(after) == len(before) + 1
                last = after[-1]
                assert (last.previous_value, last.value) == (previous, new)
                assert (last.helpful, last.unhelpful) == expected[:2]
                assert last.tally_version == version + 1
            else:
                assert after == before
                assert outcome.tally_version == version
            stored = r.hgetall(f"{store.tag}:tally:{aid}")
            assert (int(stored["helpful"]), int(stored["unhelpful"])) == expected[:2]
    finally:
        await client.aclose()


async def test_the_store_remembers_known_answers_but_not_unknown_ones(
    stack: tuple[RedisServer, ServiceProcess],
) -> None:
    server = stack[0]
    client = redis.asyncio.Redis.from_url(server.url, decode_responses=True)
    store = VoteStore(client, Committer(client, None), streams.slot_tag(streams.VOTE_CAST), 1000)
    try:
        aid = uid("a")
        assert await store.answer(aid) is None
        await store.add_answer(aid, "q1", "doc1")
        assert await store.answer(aid) is not None  # unknown was not remembered
        await client.delete(f"{store.tag}:answer:{aid}")
        # Projections never change, so the remembered one serves without a round trip.
        ref = await store.answer(aid)
        assert ref is not None and (ref.question_id, ref.doctor_id) == ("q1", "doc1")
    finally:
        await client.aclose()


async def test_a_hidden_answer_takes_no_vote_and_a_restore_brings_voting_back(
    r: RedisClient, http: httpx.AsyncClient, posted: AnswerPosted
) -> None:
    aid, qid = posted.answer_id, posted.question_id
    url = f"/answers/{aid}/votes"
    assert (await vote(http, aid, "reader-before", 1)).status_code == 200

    def decide(kind: str, item_id: str, decision: str, version: int) -> str:
        event = moderation_decided(kind, item_id, decision, version, qid)  # type: ignore[arg-type]
        return str(r.xadd(event.stream, event.to_wire()))  # type: ignore[arg-type]

    def handled(entry_id: str) -> bool:
        [group] = [g for g in r.xinfo_groups(streams.MODERATION_DECIDED) if g["name"] == "votes"]
        done = tuple(map(int, group["last-delivered-id"].split("-")))
        pending = r.xpending_range(streams.MODERATION_DECIDED, "votes", entry_id, entry_id, 1)
        return done >= tuple(map(int, entry_id.split("-"))) and not pending

    async def status() -> int:
        return (await http.get(url)).status_code

    async def until(code: int) -> None:
        for _ in range(500):
            if await status() == code:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"the tally never answered {code}")

    for kind, item_id in (("answer", aid), ("question", qid)):
        decide(kind, item_id, "hidden", 1)
        await until(404)
        for voter, value in (("reader-before", 0), ("reader-before", -1), ("reader-new", 1)):
            refused = await vote(http, aid, voter, value)
            assert refused.status_code == 404, refused.text
            assert refused.json()["error"]["code"] == "not_found"
        assert len(cast_events(r, aid)) == 1  # nothing published while hidden
        decide(kind, item_id, "restored", 2)
        await until(200)
        # A redelivered older decision does not hide it again (newest version wins).
        late = decide(kind, item_id, "hidden", 1)
        wait_for(lambda late=late: handled(late), 10, what="the late decision handled")
        assert await status() == 200
    voted = await vote(http, aid, "reader-new", 1)
    assert voted.status_code == 200, voted.text
    assert (voted.json()["helpful"], voted.json()["unhelpful"]) == (2, 0)
    # The tally carries on where it was: one version per published vote, no gap.
    assert [e.tally_version for e in cast_events(r, aid)] == [1, 2]
    assert (await http.get(url, headers=auth("reader-before"))).json()["your_vote"] == 1
