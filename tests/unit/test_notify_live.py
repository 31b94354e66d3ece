"""The live hub's fan-out to connections, without Redis: bounded mailboxes, reconnects."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from services.notify.inbox.live import QUEUE_SIZE, LiveHub, Mailbox, sse_event


async def test_a_mailbox_hands_items_over_in_order_and_wakes_its_reader() -> None:
    box = Mailbox()
    reader = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    assert box.put({"id": "1"}) and box.put({"id": "2"})
    assert await reader == {"id": "1"}
    assert await box.get() == {"id": "2"}


async def test_a_reader_that_timed_out_leaves_the_mailbox_usable() -> None:
    box = Mailbox()
    try:
        async with asyncio.timeout(0.01):
            await box.get()
    except TimeoutError:
        pass
    assert box.put({"id": "late"})
    assert await box.get() == {"id": "late"}


async def test_a_full_mailbox_refuses_and_its_end_comes_after_what_waits() -> None:
    box = Mailbox()
    for i in range(QUEUE_SIZE):
        assert box.put({"id": str(i)})
    assert not box.put({"id": "one too many"})
    box.end()
    got = [await box.get() for _ in range(QUEUE_SIZE + 1)]
    assert got[-1] is None and got[0] == {"id": "0"}


async def test_a_slow_client_is_told_to_reconnect_and_others_are_not_held_up() -> None:
    async def items(nids: list[str]) -> list[dict[str, Any] | None]:
        return [{"id": nid} for nid in nids]

    hub = LiveHub(redis=None, fetch_items=items)
    slow, other = hub.subscribe("dr-slow"), hub.subscribe("dr-other")
    entries = [
        (f"{n}-0", {"__data__": f'{{"recipient_id": "dr-slow", "notification_id": "n{n}"}}'})
        for n in range(QUEUE_SIZE + 1)
    ]
    entries.append(("9-9", {"__data__": '{"recipient_id": "dr-other", "notification_id": "x"}'}))
    await hub._fan_out(entries)
    assert await other.get() == {"id": "x"}
    got = [await slow.get() for _ in range(QUEUE_SIZE + 1)]
    assert got[-1] is None  # then the client resumes from its Last-Event-ID
    assert hub.subscribe("dr-slow") is not slow


async def test_closing_the_hub_ends_every_stream_and_any_opened_later() -> None:
    async def items(nids: list[str]) -> list[dict[str, Any] | None]:
        return []

    hub = LiveHub(redis=None, fetch_items=items)
    box = hub.subscribe("dr-a")
    hub.close()
    assert await box.get() is None
    assert await hub.subscribe("dr-b").get() is None


async def test_a_hiding_withdraws_items_from_the_open_streams_of_their_recipients_only() -> None:
    asked: list[tuple[tuple[str, str], set[str]]] = []

    async def items(nids: list[str]) -> list[dict[str, Any] | None]:
        return []

    async def withdrawn(subject: tuple[str, str], recipients: Any) -> dict[str, list[str]]:
        asked.append((subject, set(recipients)))
        return {"dr-a": ["n1", "n2"]}

    hub = LiveHub(redis=None, fetch_items=items, find_withdrawn=withdrawn)
    await hub._withdraw([("1-0", {"__data__": "{}"})])  # nobody connected: nothing asked
    box, other = hub.subscribe("dr-a"), hub.subscribe("dr-b")

    def decision(kind: str, decision: str) -> tuple[str, dict[str, str]]:
        wire = {"item_kind": kind, "item_id": "x1", "decision": decision}
        return ("1-0", {"__data__": json.dumps(wire)})

    await hub._withdraw(
        [
            decision("answer", "restored"),
            ("2-0", {"__data__": "not json"}),
            decision("answer", "hidden"),
        ]
    )
    assert asked == [(("a", "x1"), {"dr-a", "dr-b"})]
    assert await box.get() == {"withdrawn": ["n1", "n2"]}
    assert other._items == []
    # On the wire: no event id, so the client's Last-Event-ID stays its newest notification's.
    assert sse_event({"withdrawn": ["n1"]}) == 'event: withdrawn\ndata: {"ids": ["n1"]}\n\n'


async def test_a_restore_sends_the_items_it_brings_back_to_the_open_streams_only() -> None:
    asked: list[tuple[tuple[str, str], set[str]]] = []
    back = {"id": "n1", "kind": "answer", "question_id": "q1", "answer_id": "x1"}

    async def items(nids: list[str]) -> list[dict[str, Any] | None]:
        return []

    async def withdrawn(subject: tuple[str, str], recipients: Any) -> dict[str, list[str]]:
        return {"dr-a": ["n1"]}

    async def restored(subject: tuple[str, str], recipients: Any) -> dict[str, list[Any]]:
        asked.append((subject, set(recipients)))
        return {"dr-a": [back]}

    hub = LiveHub(None, items, find_withdrawn=withdrawn, find_restored=restored)
    box, other = hub.subscribe("dr-a"), hub.subscribe("dr-b")
    wire = {"item_kind": "question", "item_id": "q1", "decision": "restored"}
    await hub._withdraw([("1-0", {"__data__": json.dumps(wire)})])
    assert asked == [(("q", "q1"), {"dr-a", "dr-b"})]
    assert await box.get() == {"restored": [back]}
    assert other._items == []
    # No event id: the client's Last-Event-ID stays its newest notification's.
    assert sse_event({"restored": [back]}) == (
        f"event: restored\ndata: {json.dumps({'items': [back]})}\n\n"
    )


def _shown_after(events: list[dict[str, Any] | None]) -> set[str]:
    """What an open inbox page shows after these stream items, applied in order."""
    shown: set[str] = set()
    for event in events:
        if event is None:
            continue
        if "withdrawn" in event:
            shown.difference_update(event["withdrawn"])
        elif "restored" in event:
            shown.update(item["id"] for item in event["restored"])
        else:
            shown.add(event["id"])
    return shown


def _hidden(kind: str, item_id: str, decision: str = "hidden") -> tuple[str, dict[str, str]]:
    wire = {"item_kind": kind, "item_id": item_id, "decision": decision}
    return ("5-0", {"__data__": json.dumps(wire)})


async def test_a_hiding_that_crosses_an_alert_being_fanned_out_still_takes_it_off_the_page() -> (
    None
):
    # The alert was read from notification-sent and is being fetched (not yet marked hidden
    # by notify's own consumer) when the moderation reader sees the hiding.
    fetching, release = asyncio.Event(), asyncio.Event()

    async def items(nids: list[str]) -> list[dict[str, Any] | None]:
        fetching.set()
        await release.wait()
        return [{"id": nid} for nid in nids]

    async def withdrawn(subject: tuple[str, str], recipients: Any) -> dict[str, list[str]]:
        return {"dr-a": ["n1"]}

    hub = LiveHub(redis=None, fetch_items=items, find_withdrawn=withdrawn)
    box = hub.subscribe("dr-a")
    entry = ("4-0", {"__data__": '{"recipient_id": "dr-a", "notification_id": "n1"}'})
    fan_out = asyncio.create_task(hub._fan_out([entry]))
    await fetching.wait()
    withdraw = asyncio.create_task(hub._withdraw([_hidden("answer", "x1")]))
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(fan_out, withdraw)
    assert _shown_after(box._items) == set()


async def test_an_alert_read_after_its_hiding_was_sent_is_not_sent_to_the_page() -> None:
    # The moderation reader ran ahead: the hiding was sent before the alert was read, and
    # notify's consumer has not marked it hidden yet, so the fetch still returns it.
    async def items(nids: list[str]) -> list[dict[str, Any] | None]:
        return [{"id": nid} for nid in nids]

    async def withdrawn(subject: tuple[str, str], recipients: Any) -> dict[str, list[str]]:
        return {"dr-a": ["n1"]}

    async def restored(subject: tuple[str, str], recipients: Any) -> dict[str, list[Any]]:
        return {"dr-a": [{"id": "n1"}]}

    hub = LiveHub(None, items, find_withdrawn=withdrawn, find_restored=restored)
    box = hub.subscribe("dr-a")
    entry = ("4-0", {"__data__": '{"recipient_id": "dr-a", "notification_id": "n1"}'})
    await hub._withdraw([_hidden("answer", "x1")])
    await hub._fan_out([entry])
    assert _shown_after(box._items) == set()
    # Restored: it is sent again, and a late copy of the alert is no longer held back.
    await hub._withdraw([_hidden("answer", "x1", "restored")])
    await hub._fan_out([entry])
    assert _shown_after(box._items) == {"n1"}
    assert box._items[-1] == {"id": "n1"}


async def test_a_withdrawal_says_which_of_its_alerts_were_unread() -> None:
    async def items(nids: list[str]) -> list[dict[str, Any] | None]:
        return []

    async def withdrawn(subject: tuple[str, str], recipients: Any) -> dict[str, list[str]]:
        return {"dr-a": ["n1", "n2"]}

    async def unread(nids: list[str]) -> set[str]:
        return {"n2"}

    hub = LiveHub(None, items, find_withdrawn=withdrawn, find_unread=unread)
    box = hub.subscribe("dr-a")
    await hub._withdraw([_hidden("answer", "x1")])
    item = await box.get()
    assert item == {"withdrawn": ["n1", "n2"], "unread": ["n2"]}
    assert sse_event(item) == (
        'event: withdrawn\ndata: {"ids": ["n1", "n2"], "unread": ["n2"]}\n\n'
    )
