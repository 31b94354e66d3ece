"""Flag retention (ASKDOC_FLAG_RETENTION_S): the questions service as a process on its own
redis-server, with a retention of seconds. A reporter's flag marker expires with it (then a
new flag by the same reporter counts again), and a restored item's queue entry expires
after the decision, while open and hidden items stay."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.questions.moderation.store import FLAG_TAG
from shared import streams
from shared.redis import RedisClient
from tests.support import RedisServer, ServiceProcess, auth, service_on_own_redis, wait_for

RETENTION_S = 2
ADMIN = auth("admin-ret", "admin")


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[RedisServer, ServiceProcess]]:
    with service_on_own_redis("questions", ASKDOC_FLAG_RETENTION_S=str(RETENTION_S)) as pair:
        yield pair


def ask(url: str) -> str:
    posted = httpx.post(
        f"{url}/questions",
        json={
            "title": "Acne scars on my cheeks",
            "body": "What helps with old acne scars?",
            "topics": ["acne"],
            "location": {"city": "Los Angeles", "state": "CA"},
        },
        headers=auth("pat-ret"),
        timeout=10,
    )
    assert posted.status_code == 201, posted.text
    qid: str = posted.json()["id"]
    return qid


def flag(url: str, qid: str, who: str) -> None:
    reply = httpx.put(
        f"{url}/questions/{qid}/flag",
        json={"reason": "spam", "note": f"note from {who}"},
        headers=auth(who),
        timeout=10,
    )
    assert reply.status_code == 200, reply.text


def decide(url: str, qid: str, decision: str) -> None:
    reply = httpx.put(
        f"{url}/moderation/questions/{qid}", json={"decision": decision}, headers=ADMIN, timeout=10
    )
    assert reply.status_code == 200, reply.text


def listed(url: str, qid: str, status: str) -> dict[str, Any] | None:
    reply = httpx.get(
        f"{url}/moderation/queue", params={"status": status}, headers=ADMIN, timeout=10
    )
    assert reply.status_code == 200, reply.text
    found = [i for i in reply.json()["items"] if i["item_id"] == qid]
    return found[0] if found else None


def counted(r: RedisClient, qid: str) -> list[int]:
    events = [json.loads(f["__data__"]) for _, f in r.xrange(streams.ITEM_FLAGGED)]
    return [e["flag_count"] for e in events if e["item_id"] == qid]


def test_flag_markers_and_decided_queue_entries_expire_after_the_retention(
    stack: tuple[RedisServer, ServiceProcess],
) -> None:
    server, service = stack
    r, url = server.client(), service.url
    qid = ask(url)
    marker = f"{FLAG_TAG}:flag:question:{qid}:reader-1"

    # The reporter's marker is written with the flag, with the retention as its expiry.
    flag(url, qid, "reader-1")
    assert 0 < r.ttl(marker) <= RETENTION_S
    flag(url, qid, "reader-1")  # within the retention: no second count
    assert counted(r, qid) == [1]
    # After it, the same reporter's flag counts again.
    wait_for(lambda: not r.exists(marker), timeout=10, what="the flag marker to expire")
    flag(url, qid, "reader-1")
    assert counted(r, qid) == [1, 2]

    def open_with(count: int) -> dict[str, Any] | None:
        item = listed(url, qid, "open")
        return item if item and item["flag_count"] == count else None

    open_item = wait_for(lambda: open_with(2), timeout=15, what="both flags in the queue")
    assert open_item["notes"] == ["note from reader-1"] * 2

    [item_key] = r.keys(f"*:mod:item:question:{qid}")
    [notes_key] = r.keys(f"*:mod:notes:question:{qid}")
    assert r.ttl(item_key) == -1 and r.ttl(notes_key) == -1  # open: kept

    # Hidden: in the hidden list, kept for good, however long it stays hidden.
    decide(url, qid, "hidden")
    wait_for(lambda: listed(url, qid, "hidden"), timeout=15, what="the item hidden")
    assert listed(url, qid, "open") is None
    assert r.ttl(item_key) == -1 and r.ttl(notes_key) == -1

    # Restored and not flagged since: in neither list, so its entry expires.
    decide(url, qid, "restored")
    wait_for(lambda: not listed(url, qid, "hidden"), timeout=15, what="the item restored")
    assert listed(url, qid, "open") is None
    assert 0 < r.ttl(item_key) <= RETENTION_S and 0 < r.ttl(notes_key) <= RETENTION_S
    wait_for(lambda: not r.exists(item_key, notes_key), timeout=10, what="the entry to expire")

    # A new flag brings it back with the owner's totals (kept for good), and keeps it.
    flag(url, qid, "reader-2")
    assert counted(r, qid) == [1, 2, 3]
    back = wait_for(lambda: open_with(3), timeout=15, what="the item open again")
    assert back["notes"] == ["note from reader-2"] and back["last_decision"] is None
    assert r.ttl(item_key) == -1 and r.ttl(notes_key) == -1
    # Decisions carry on from the owner's version, which never expires.
    decide(url, qid, "hidden")
    hidden = wait_for(lambda: listed(url, qid, "hidden"), timeout=15, what="hidden again")
    assert hidden["last_decision"] == "hidden"
    decisions = [json.loads(f["__data__"]) for _, f in r.xrange(streams.MODERATION_DECIDED)]
    assert [d["decision_version"] for d in decisions if d["item_id"] == qid] == [1, 2, 3]


def test_a_dismissed_items_entry_expires_like_a_restored_one_and_a_new_flag_reopens_it(
    stack: tuple[RedisServer, ServiceProcess],
) -> None:
    server, service = stack
    r, url = server.client(), service.url
    qid = ask(url)
    flag(url, qid, "reader-d1")
    wait_for(lambda: listed(url, qid, "open"), timeout=15, what="the flag in the queue")
    [item_key] = r.keys(f"*:mod:item:question:{qid}")
    published = r.xlen(streams.MODERATION_DECIDED) if r.exists(streams.MODERATION_DECIDED) else 0

    # Dismissed: off the open queue at once, in neither list, so its entry expires.
    decide(url, qid, "dismissed")
    assert listed(url, qid, "open") is None and listed(url, qid, "hidden") is None
    assert r.hget(item_key, "dismissed_count") == "1" and r.hget(item_key, "dismissed_by")
    assert 0 < r.ttl(item_key) <= RETENTION_S
    stream_len = r.xlen(streams.MODERATION_DECIDED) if r.exists(streams.MODERATION_DECIDED) else 0
    assert stream_len == published  # no decision published
    wait_for(lambda: not r.exists(item_key), timeout=10, what="the entry to expire")
    # Dismissing an entry the queue no longer has changes nothing (and creates nothing).
    decide(url, qid, "dismissed")
    assert not r.exists(item_key)

    # A new flag counts past the dismissed ones: open again, and kept.
    flag(url, qid, "reader-d2")
    back = wait_for(lambda: listed(url, qid, "open"), timeout=15, what="the item open again")
    assert back["flag_count"] == 2 and r.ttl(item_key) == -1
