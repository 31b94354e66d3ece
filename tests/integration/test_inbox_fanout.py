"""A fan-out's script writes what the guarded Txns wrote, on a real redis-server.

`AlertStore.notify_each_once` (inbox/add_each_once.lua) commits a new answer's follower
alerts in one call, looking at the hidden markers and writing the :about: indexes once per
call. Here the same notifications go through it on one database and through the Txn path
(`once` then `notify` per alert, `commit_many`) on another, and every key must end the
same: shown, born hidden under a hidden question or answer, and redelivered with some
recipients alerted already.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.notify.alerts.store import AlertChange
from services.notify.inbox.domain import Notification, fresh_item
from services.notify.parts import NotifyParts, build_parts
from services.notify.settings import NotifySettings
from shared import streams
from shared.atomic import Committer
from tests.support import JWT_SECRET

TAG = streams.slot_tag(streams.NOTIFICATION_SENT)


def parts_on(url: str) -> tuple[aioredis.Redis, NotifyParts]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    settings = NotifySettings(jwt_secret=JWT_SECRET)
    return client, build_parts(client, Committer(client), TAG, settings)


def alerts(parts: NotifyParts, recipients: list[str]) -> list[tuple[Notification, tuple[str, ...]]]:
    """Follower alerts about q1's answer a1; every third recipient has a webhook."""
    made = []
    for n, user in enumerate(recipients):
        item = fresh_item(
            "new-answer",
            datetime.now(UTC),
            question_id="q1",
            answer_id="a1",
            title="A title",
            reason={"doctor_id": "dr-a", "following": True},
            reason_text="Dr A answered a question you follow",
        )
        prefs = {"channels": ["webhook"]} if n % 3 == 0 else {}
        made.append((parts.inbox.notification(user, item, prefs), ("na", "a1", user)))
    return made


async def dump(client: aioredis.Redis) -> dict[str, Any]:
    """Every key's value (stream entries without their ids) and whether it has a TTL."""
    state: dict[str, Any] = {}
    for key in sorted(await client.keys("*")):
        kind = await client.type(key)
        value: Any
        if kind == "string":
            value = await client.get(key)
        elif kind == "hash":
            value = await client.hgetall(key)
        elif kind == "zset":
            value = await client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = [fields for _, fields in await client.xrange(key)]
        else:
            raise AssertionError(f"unexpected {kind} at {key}")
        state[key] = (kind, value, await client.ttl(key) > 0)
    return state


@pytest.mark.parametrize("hidden", [None, "q", "a"])
async def test_the_fan_out_script_writes_what_the_guarded_txns_wrote(
    redis_url: str, hidden: str | None
) -> None:
    base = redis_url.rsplit("/", 1)[0]  # two databases of the test's server
    txn_client, txn_parts = parts_on(f"{base}/1")
    lua_client, lua_parts = parts_on(f"{base}/2")
    if hidden is not None:
        for client in (txn_client, lua_client):
            await client.set(f"{TAG}:hidden:{hidden}:{'q1' if hidden == 'q' else 'a1'}", 1)
    first = alerts(txn_parts, [f"u{n}" for n in range(7)])
    # A redelivery (new ids, as a redelivery makes them): three new followers, and u0..u6
    # again, whose guards stop them.
    again = alerts(txn_parts, [f"u{n}" for n in range(10)])
    again = again[7:] + again[:7]

    async def by_txns(batch: list[tuple[Notification, tuple[str, ...]]]) -> list[bool]:
        changes = [AlertChange().once(note.id, *guard).notify(note) for note, guard in batch]
        return await txn_parts.stores.alerts.commit_many(changes)

    assert await by_txns(first) == [True] * 7
    assert await lua_parts.stores.alerts.notify_each_once(first) == [True] * 7
    # Already alerted: the script changes nothing for them, and says so.
    assert await by_txns(again) == [True] * 3 + [False] * 7
    assert await lua_parts.stores.alerts.notify_each_once(again) == [True] * 3 + [False] * 7

    txn_state, lua_state = await dump(txn_client), await dump(lua_client)
    assert lua_state == txn_state
    # What the comparison covers: ten items, their events and the webhook's outbox entries.
    notes = [k for k in lua_state if k.startswith(f"{TAG}:n:")]
    assert len(notes) == 10
    assert len(lua_state[streams.NOTIFICATION_SENT][1]) == 10
    assert len(lua_state[lua_parts.stores.outbox.stream][1]) == 4
    about_q = lua_state[f"{TAG}:about:q:q1"][1]
    assert len(about_q) == 10 and lua_state[f"{TAG}:about:a:a1"][1] == about_q
    shown = [k for k in lua_state if k.startswith(f"{TAG}:inbox:")]
    assert len(shown) == (10 if hidden is None else 0)
    assert all((lua_state[k][1].get("hidden") == "1") == (hidden is not None) for k in notes)
    for client in (txn_client, lua_client):
        await client.aclose()


async def test_the_fan_out_takes_notifications_about_the_same_things_only(
    redis_url: str,
) -> None:
    client, parts = parts_on(redis_url)
    [(note, guard)] = alerts(parts, ["u1"])
    other = Notification(note.recipient, {**note.item, "answer_id": "a2"}, (), note.event)
    with pytest.raises(ValueError, match="same things"):
        await parts.stores.alerts.notify_each_once([(note, guard), (other, guard)])
    assert await client.keys("*") == []
    await client.aclose()
