"""Guarded commits against a real redis-server: all or nothing, one or many per call."""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.atomic import Committer, Txn
from shared.events import QuestionPosted
from shared.ratelimit import WriteLimit


def event(n: int) -> QuestionPosted:
    return QuestionPosted(
        correlation_id="c",
        producer="questions",
        question_id=f"q{n}",
        title="A title long enough",
        body="b",
        topics=["botox"],
        specialties=["dermatology"],
        asker_id="a",
    )


async def test_a_failed_guard_leaves_no_trace(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    committer = Committer(client)
    await client.set("{t}:seen", "first")
    txn = (
        Txn()
        .absent("dedupe", "{t}:seen", "second")
        .call("SET", "{t}:state", "x")
        .publish(event(1), 1000)
    )
    result = await committer.commit(txn)
    assert not result.applied and result.failed_guard == "dedupe" and result.found == "first"
    assert await client.get("{t}:state") is None
    assert await client.exists("askdoc.question-posted") == 0
    await client.aclose()


async def test_commit_many_applies_each_txn_on_its_own_guards(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    committer = Committer(client)
    await client.set("{t}:once:2", "taken")
    txns = [
        Txn()
        .absent("once", f"{{t}}:once:{n}", str(n))
        .call("RPUSH", "{t}:log", n)
        .publish(event(n), 1000)
        for n in range(1, 4)
    ]
    results = await committer.commit_many(txns)
    assert [r.applied for r in results] == [True, False, True]
    assert results[1].failed_guard == "once" and results[1].found == "taken"
    assert await client.lrange("{t}:log", 0, -1) == ["1", "3"]
    assert await client.xlen("askdoc.question-posted") == 2
    assert all(r.entry_ids for r in (results[0], results[2]))
    assert await committer.commit_many([]) == []
    await client.aclose()


async def test_write_limit_counts_attempts_and_refuses_past_the_limit(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    committer = Committer(client)
    outcomes = []
    for n in range(4):
        txn = Txn().limit("rate_limit", "{t}:rl", 3, 60).call("RPUSH", "{t}:writes", n)
        outcomes.append(await committer.commit(txn))
    assert [o.applied for o in outcomes] == [True, True, True, False]
    assert outcomes[3].failed_guard == "rate_limit" and 0 < int(outcomes[3].found or 0) <= 60
    assert await client.llen("{t}:writes") == 3
    await client.aclose()


async def test_a_refunded_write_is_taken_back_only_while_its_window_lasts(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    committer = Committer(client)
    limit = WriteLimit("{t}", 2, 60)
    key = await limit.count(committer, "refunded", "patient")
    assert key is not None and await client.get(key) == "1"
    await WriteLimit.refund(committer, key)
    assert await client.get(key) == "0" and 0 < await client.ttl(key) <= 60
    # The window ended (its counter expired): a late refund creates no counter without expiry.
    await client.delete(key)
    await WriteLimit.refund(committer, key)
    assert await client.exists(key) == 0
    assert await limit.count(committer, "root", "admin") is None
    await client.aclose()


async def test_a_write_can_depend_on_whether_other_keys_exist(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    committer = Committer(client)
    await client.set("{t}:flag-a", "1")
    txn = (
        Txn()
        .call("RPUSH", "{t}:log", "always")
        .call("RPUSH", "{t}:log", "when-a", when=["{t}:flag-a"])
        .call("RPUSH", "{t}:log", "when-b", when=["{t}:flag-b"])
        .call("RPUSH", "{t}:log", "when-a-or-b", when=["{t}:flag-b", "{t}:flag-a"])
        .call("RPUSH", "{t}:log", "unless-b", unless=["{t}:flag-b"])
        .call("RPUSH", "{t}:log", "unless-a-or-b", unless=["{t}:flag-b", "{t}:flag-a"])
        .call("SET", "{t}:flag-b", "1")
        .call("RPUSH", "{t}:log", "unless-b-later", unless=["{t}:flag-b"])
    )
    # A skipped XADD keeps its place among the entry ids, as an empty one.
    txn.call("XADD", "{t}:stream", "*", "n", "1", when=["{t}:flag-c"])
    txn.call("XADD", "{t}:stream", "*", "n", "2")
    result = await committer.commit(txn)
    assert result.applied
    # Each condition is checked when its write comes: a key set earlier in the Txn counts.
    assert await client.lrange("{t}:log", 0, -1) == ["always", "when-a", "when-a-or-b", "unless-b"]
    assert result.entry_ids[0] == "" and result.entry_ids[1] != ""
    assert await client.xlen("{t}:stream") == 1
    await client.aclose()


async def test_a_commit_loads_the_script_again_after_redis_lost_it(redis_url: str) -> None:
    # A restarted or flushed Redis knows no scripts: the commit loads its own and applies.
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    committer = Committer(client)
    first = await committer.commit(Txn().call("SET", "{t}:before", "1"))
    await client.script_flush()
    again = await committer.commit(Txn().call("SET", "{t}:after", "2").publish(event(9), 1000))
    assert first.applied and again.applied and len(again.entry_ids) == 1
    assert await client.get("{t}:after") == "2"
    assert await client.xlen("askdoc.question-posted") == 1
    await client.aclose()
