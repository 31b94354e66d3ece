"""Bounding inboxes on real Redis: one trim call for many recipients drops, for each,
exactly what a call of its own drops (expired first, then the surplus, read items first)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import redis

from services.notify.inbox.domain import new_item, new_notification_id, notification_id_floor
from services.notify.parts import NotifyParts, build_parts
from services.notify.settings import NotifySettings
from shared.atomic import Committer, Txn
from shared.redis import make_redis
from tests.support import JWT_SECRET

TAG = "{askdoc.notification-sent}"
NOW_MS = 1_790_000_000_000
FLOOR = notification_id_floor(NOW_MS - 1000)


def parts_on(url: str) -> NotifyParts:
    s = NotifySettings(redis_url=url, jwt_secret=JWT_SECRET)  # type: ignore[call-arg]
    client = make_redis(s)
    return build_parts(client, Committer(client), TAG, s)


async def fill(parts: NotifyParts, rng: random.Random, recipients: list[str]) -> None:
    """Each recipient: some expired items, some live ones, some of them read."""
    store = parts.stores.inbox
    for recipient in recipients:
        for n in range(rng.randint(0, 9)):
            ms = NOW_MS + rng.choice([-5000, -2000, 5000, 9000]) + n
            nid = new_notification_id(ms, f"{rng.getrandbits(48):012x}")
            item = new_item(nid, "digest", datetime.fromtimestamp(ms / 1000, UTC))
            note = parts.inbox.notification(recipient, item, {}, correlation_id="c")
            await store.committer.commit(store.add(Txn(), note))
            if rng.random() < 0.4:
                await store.mark_read(recipient, nid)


def inboxes(client: redis.Redis, recipients: list[str]) -> dict[str, object]:
    return {
        r: (
            sorted(client.zrange(f"{TAG}:inbox:{r}", 0, -1)),
            sorted(client.zrange(f"{TAG}:unread:{r}", 0, -1)),
            sorted(client.zrange(f"{TAG}:readset:{r}", 0, -1)),
            sorted(k for k in client.scan_iter(f"{TAG}:n:*") if client.hget(k, "recipient") == r),
        )
        for r in recipients
    }


def test_one_trim_call_for_many_inboxes_drops_what_a_call_each_drops(redis_url: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    urls = [f"{base}/1", f"{base}/2"]
    clients = [redis.Redis.from_url(u, decode_responses=True) for u in urls]
    recipients = [f"dr-{n}" for n in range(12)]
    dropped = []

    async def run(url: str, together: bool) -> None:
        parts = parts_on(url)
        try:
            await fill(parts, random.Random(7), recipients)
            store = parts.stores.inbox
            if together:
                dropped.append(await store.trim(recipients, 3, FLOOR))
            else:
                dropped.append(sum([await store.trim([r], 3, FLOOR) for r in recipients]))
        finally:
            await parts.stores.inbox.redis.aclose()

    for client in clients:
        client.flushdb()
    asyncio.run(run(urls[0], together=True))
    asyncio.run(run(urls[1], together=False))
    together, alone = inboxes(clients[0], recipients), inboxes(clients[1], recipients)
    assert dropped[0] == dropped[1] > 0
    assert together == alone
    for inbox, unread, readset, notes in together.values():  # type: ignore[misc]
        assert len(inbox) <= 3 and all(nid >= FLOOR for nid in inbox)
        assert sorted(unread + readset) == inbox
        assert notes == [f"{TAG}:n:{nid}" for nid in inbox]
