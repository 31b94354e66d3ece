"""The relay against a real redis-server: an event bound for another hash slot than its
state is committed to the outbox with the state, then forwarded to its stream once."""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from shared import streams
from shared.atomic import Committer, Txn
from shared.events import QuestionEdited, QuestionPosted
from shared.relay import GROUP, Relay, outbox_key
from shared.settings import Settings
from tests.support import JWT_SECRET

TAG = streams.slot_tag(streams.QUESTION_POSTED)


def edited(qid: str) -> QuestionEdited:
    return QuestionEdited(
        correlation_id="c",
        producer="questions",
        question_id=qid,
        title="A title long enough",
        body="b",
        revision=2,
        edited_at="2026-12-01T00:00:00+00:00",  # type: ignore[arg-type]
    )


def posted(qid: str) -> QuestionPosted:
    return QuestionPosted(
        correlation_id="c",
        producer="questions",
        question_id=qid,
        title="A title long enough",
        body="b",
        topics=["botox"],
        specialties=["dermatology"],
        asker_id="a",
    )


async def test_an_away_event_goes_through_the_outbox_once_and_a_home_event_stays_direct(
    redis_url: str,
) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    settings = Settings(jwt_secret=JWT_SECRET, claim_idle_ms=100, consumer_name="r1")
    committer = Committer(client, outbox_key(TAG))
    relay = Relay(client, "questions", TAG, settings)
    await relay.ensure_group()

    txn = Txn().call("SET", f"{TAG}:q:q1", "v2").publish(edited("q1"))
    txn.publish(posted("q1"))  # the home stream: written directly, same slot
    assert (await committer.commit(txn)).applied
    assert await client.xlen(streams.QUESTION_EDITED) == 0
    assert await client.xlen(streams.QUESTION_POSTED) == 1
    [(_, fields)] = await client.xrange(outbox_key(TAG))
    assert fields["stream"] == streams.QUESTION_EDITED

    # A replica reads the entry and dies before forwarding it: another claims it.
    await client.xreadgroup(GROUP, "dead", {outbox_key(TAG): ">"}, count=10)
    [_, claimed, _] = await client.xautoclaim(outbox_key(TAG), GROUP, "r1", 0, "0-0")
    assert await relay.forward(claimed) == 1
    # Forwarded once; the same entry again (a replica died before its XACK) is not re-sent.
    assert await relay.forward(claimed) == 0
    [(_, out)] = await client.xrange(streams.QUESTION_EDITED)
    assert QuestionEdited.model_validate(json.loads(out["__data__"])).question_id == "q1"
    assert set(out) == {"__data__"}
    assert (await client.xpending(outbox_key(TAG), GROUP))["pending"] == 0
    await client.aclose()


async def test_a_refused_commit_puts_nothing_in_the_outbox(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    committer = Committer(client, outbox_key(TAG))
    await client.set(f"{TAG}:seen", "1")
    txn = Txn().absent("dedupe", f"{TAG}:seen").call("SET", f"{TAG}:q:q1", "x")
    result = await committer.commit(txn.publish(edited("q1")))
    assert not result.applied
    assert await client.exists(outbox_key(TAG), f"{TAG}:q:q1") == 0
    await client.aclose()
