"""Live inbox delivery over server-sent events, fed from the notification-sent stream.

Each replica runs ONE reader (plain XREAD, no consumer group, so every replica sees
every entry) on `askdoc.notification-sent` and fans entries out to the SSE connections
it holds, by recipient. Whichever replica committed a notification, the replica a
client is connected to sees it, so several replicas need no sticky routing and no
pub/sub (which would drop messages while a reader reconnects). A client that was away
resumes with `Last-Event-ID`: the items newer than that id are replayed from its inbox
(ids sort by creation time) before live ones follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from typing import Any, Protocol

from redis.exceptions import RedisError

from shared import streams
from shared.backoff import Backoff
from shared.errors import RateLimited
from shared.events import WIRE_FIELD
from shared.logging import get_logger
from shared.redis import RedisClient

log = get_logger("askdoc.notify.live")

FetchItems = Callable[[list[str]], Awaitable[list[dict[str, Any] | None]]]
#: The notifications a hiding takes out of the inboxes of some recipients: (question 'q' or
#: answer 'a', its id) and the recipients asked about -> {recipient: [notification id]}.
FindWithdrawn = Callable[[tuple[str, str], Collection[str]], Awaitable[dict[str, list[str]]]]
#: The items a restore brings back to the inboxes of some recipients, as the inbox shows
#: them: (question 'q' or answer 'a', its id) and the recipients -> {recipient: [item]}.
FindRestored = Callable[
    [tuple[str, str], Collection[str]], Awaitable[dict[str, list[dict[str, Any]]]]
]
#: Which of some notifications are unread (for the count of a page that does not show them).
FindUnread = Callable[[list[str]], Awaitable[set[str]]]
QUEUE_SIZE = 256
#: How long the hub remembers the alerts a hiding withdrew from open streams, so that one
#: its notification reader reaches later (it runs apart from the moderation reader) is not
#: sent to a page that was told to drop it; and how many it remembers at most.
WITHDRAWN_MEMORY_S = 120.0
WITHDRAWN_MEMORY_MAX = 10_000
_CLOSED = None


class Mailbox:
    """One connection's undelivered items (None: reconnect), at most QUEUE_SIZE of them.

    A list and at most one waiter: an asyncio.Queue keeps four deques (about 3 KiB), and
    a replica holds ten thousand connections.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[dict[str, Any] | None] = []
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: dict[str, Any]) -> bool:
        """Add an item; False (nothing added) when QUEUE_SIZE are waiting already."""
        if len(self._items) >= QUEUE_SIZE:
            return False
        self._items.append(item)
        self._wake()
        return True

    def end(self) -> None:
        """After what is waiting, tell the connection to end (its client reconnects)."""
        self._items.append(_CLOSED)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> dict[str, Any] | None:
        """The oldest item, once there is one."""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class LiveHub:
    """One stream reader per replica, fanning notifications out to local SSE clients; and
    one reader of moderation decisions, withdrawing what a hiding takes out of an inbox
    from the open streams of its recipients (a page open before the hiding drops it), and
    sending them what a restore brings back (a page open meanwhile shows it again).

    The two readers take turns, and the hub remembers for a while what it withdrew: an
    alert and the hiding of what it is about reach a page in the order the hub handled
    them, and an alert the notification reader reaches after its hiding was sent (before
    notify's consumer marked it hidden) is not sent at all."""

    def __init__(
        self,
        redis: RedisClient,
        fetch_items: FetchItems,
        find_withdrawn: FindWithdrawn | None = None,
        find_restored: FindRestored | None = None,
        find_unread: FindUnread | None = None,
    ) -> None:
        self.redis = redis
        self.find_unread = find_unread
        self.fetch_items = fetch_items
        self.find_withdrawn = find_withdrawn
        self.find_restored = find_restored
        self._clients: dict[str, set[Mailbox]] = {}
        self.closed = False
        # The two readers take turns: an alert fetched while a hiding is being withdrawn
        # would otherwise reach the page after the `withdrawn` that should have removed it.
        self._turn = asyncio.Lock()
        self._withdrawn: dict[str, float] = {}  # notification id -> when it was withdrawn

    def subscribe(self, recipient: str) -> Mailbox:
        """A mailbox that receives the recipient's new notifications."""
        queue = Mailbox()
        if self.closed:
            queue.end()  # shutting down: end at once, resume elsewhere
            return queue
        self._clients.setdefault(recipient, set()).add(queue)
        return queue

    def unsubscribe(self, recipient: str, queue: Mailbox) -> None:
        """Forget a closed connection's queue."""
        queues = self._clients.get(recipient)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._clients[recipient]

    async def run(self) -> None:
        """Read the notifications from the stream's current end, forever, surviving Redis
        outages."""
        await self._follow(streams.NOTIFICATION_SENT, self._fan_out)

    async def run_withdrawals(self) -> None:
        """Read the moderation decisions from the stream's current end, forever: each hiding
        withdraws the items about it from the open streams of their recipients, and each
        restore sends them the items it brings back."""
        await self._follow(streams.MODERATION_DECIDED, self._withdraw)

    async def _follow(
        self,
        stream: str,
        handle: Callable[[list[tuple[str, dict[str, str]]]], Awaitable[None]],
    ) -> None:
        last: str | None = None
        pauses = Backoff(0.5, 10.0)
        while True:
            try:
                if last is None:
                    # Pin the current end by id: re-reading from "$" on every call
                    # would miss entries added between two calls.
                    tail = await self.redis.xrevrange(stream, count=1)
                    last = tail[0][0] if tail else "0-0"
                reply = await self.redis.xread({stream: last}, count=200, block=2000)
                pauses.reset()
                for _, entries in reply or []:
                    last = entries[-1][0]
                    await handle(entries)
            except (RedisError, OSError) as exc:
                delay = pauses.next()
                log.warning(
                    "live_reader_failed",
                    stream=stream,
                    error=str(exc)[:200],
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)

    async def _withdraw(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        async with self._turn:
            await self._withdraw_each(entries)

    async def _withdraw_each(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        for _, fields in entries:
            if not self._clients:
                return
            try:
                data = json.loads(fields.get(WIRE_FIELD, "{}"))
                kind, item_id, decision = data["item_kind"], data["item_id"], data["decision"]
            except (ValueError, KeyError, TypeError):
                continue  # not ours to judge; the stream's consumers dead-letter it
            if kind not in ("question", "answer"):
                continue
            subject = ("q" if kind == "question" else "a", str(item_id))
            if decision == "hidden" and self.find_withdrawn is not None:
                found = await self.find_withdrawn(subject, set(self._clients))
                # Which were unread: a page that lists them on a later page counts them.
                unread: set[str] = set()
                if found and self.find_unread is not None:
                    unread = await self.find_unread([n for nids in found.values() for n in nids])
                for recipient, nids in found.items():
                    self._remember_withdrawn(nids)
                    item: dict[str, Any] = {"withdrawn": nids}
                    if self.find_unread is not None:
                        item["unread"] = [n for n in nids if n in unread]
                    self._put(recipient, item)
            elif decision == "restored" and self.find_restored is not None:
                back = await self.find_restored(subject, set(self._clients))
                for recipient, items in back.items():
                    for item in items:
                        self._withdrawn.pop(str(item.get("id")), None)
                    self._put(recipient, {"restored": items})

    def _remember_withdrawn(self, nids: list[str]) -> None:
        now = time.monotonic()
        for nid in nids:
            self._withdrawn.pop(nid, None)
            self._withdrawn[nid] = now  # insertion order is age order
        while self._withdrawn:
            oldest, at = next(iter(self._withdrawn.items()))
            if len(self._withdrawn) <= WITHDRAWN_MEMORY_MAX and now - at < WITHDRAWN_MEMORY_S:
                break
            del self._withdrawn[oldest]

    def _was_withdrawn(self, nid: str) -> bool:
        at = self._withdrawn.get(nid)
        return at is not None and time.monotonic() - at < WITHDRAWN_MEMORY_S

    def _put(self, recipient: str, item: dict[str, Any]) -> None:
        for queue in list(self._clients.get(recipient, ())):
            if not queue.put(item):
                # A client that cannot keep up is told to reconnect; it resumes
                # from its Last-Event-ID without losing anything.
                queue.end()
                self.unsubscribe(recipient, queue)

    async def _fan_out(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        async with self._turn:
            await self._fan_out_each(entries)

    async def _fan_out_each(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        wanted: list[tuple[str, str]] = []
        for _, fields in entries:
            if not self._clients:
                return
            try:
                data = json.loads(fields.get(WIRE_FIELD, "{}"))
                recipient, nid = data["recipient_id"], data["notification_id"]
            except (ValueError, KeyError, TypeError):
                continue  # not ours to judge; the stream's consumers dead-letter it
            if not isinstance(nid, str):
                continue
            if recipient in self._clients and not self._was_withdrawn(nid):
                wanted.append((recipient, nid))
        if not wanted:
            return
        items = await self.fetch_items([nid for _, nid in wanted])
        for (recipient, _), item in zip(wanted, items, strict=True):
            if item is not None:
                self._put(recipient, item)

    def close(self) -> None:
        """End every open stream, and any opened from now on (shutdown)."""
        self.closed = True
        for recipient, queues in list(self._clients.items()):
            for queue in list(queues):
                queue.end()
                self.unsubscribe(recipient, queue)


class TooManyStreams(RateLimited):
    """The user holds as many live streams as allowed (429)."""

    code = "too_many_streams"


#: Told to the client when its token expires: reconnect with a fresh one.
EXPIRY_EVENT = 'event: token-expired\ndata: {"reconnect": "with a fresh token"}\n\n'


def sse_event(item: dict[str, Any]) -> str:
    """One SSE message: the notification id as the event id, the item as data; or, for
    notifications withdrawn by a hiding, their ids (with no event id, so the client's
    Last-Event-ID stays that of the newest notification it was sent); or, for the items a
    restore brings back, those items as the inbox shows them (no event id either)."""
    if "withdrawn" in item:
        data: dict[str, Any] = {"ids": item["withdrawn"]}
        if "unread" in item:
            data["unread"] = item["unread"]
        return f"event: withdrawn\ndata: {json.dumps(data)}\n\n"
    if "restored" in item:
        return f"event: restored\ndata: {json.dumps({'items': item['restored']})}\n\n"
    return f"id: {item['id']}\nevent: notification\ndata: {json.dumps(item)}\n\n"


class LiveStreams:
    """Opens live streams within each user's cap (slots shared by every replica)."""

    def __init__(
        self,
        hub: LiveHub,
        slots: StreamSlotsPort,
        replay: Callable[[str, str], Awaitable[list[dict[str, Any]]]],
        heartbeat_s: float,
        max_per_user: int,
    ) -> None:
        self.hub = hub
        self.slots = slots
        self.replay = replay
        self.heartbeat_s = heartbeat_s
        self.max_per_user = max_per_user
        # Three missed renewals and the slot of a dead replica's stream is free again.
        self.lease_s = 3 * heartbeat_s
        self._open: dict[str, str] = {}  # connection id -> user id, of this replica

    async def open(
        self, user_id: str, expires_at: float | None, last_event_id: str | None
    ) -> AsyncIterator[str]:
        """The user's SSE body; TooManyStreams when they hold `max_per_user` already."""
        conn_id = uuid.uuid4().hex
        if not await self.slots.take(user_id, conn_id, self.lease_s, self.max_per_user):
            raise TooManyStreams(
                f"at most {self.max_per_user} live streams per user; close one first",
                retry_after_s=max(1, int(self.heartbeat_s)),
            )
        return self._stream(user_id, conn_id, expires_at, last_event_id)

    async def _stream(
        self, user_id: str, conn_id: str, expires_at: float | None, last_event_id: str | None
    ) -> AsyncIterator[str]:
        """The SSE body: replay after Last-Event-ID, then live items, until the token
        expires (`expires_at`). One generator per stream and nothing else: ten thousand
        streams make every object count."""
        # Held (and renewed) only once the body runs: a response that never starts leaves
        # nothing behind, and its slot lapses with its lease.
        self._open[conn_id] = user_id
        queue = self.hub.subscribe(user_id)  # before the replay, so nothing falls between
        try:
            yield "retry: 3000\n: connected\n\n"
            sent: set[str] | None = None
            if last_event_id:
                sent = set()
                for item in await self.replay(user_id, last_event_id):
                    sent.add(item["id"])
                    yield sse_event(item)
            while True:
                wait = self.heartbeat_s
                if expires_at is not None:
                    left = expires_at - time.time()
                    if left <= 0:
                        # A stream outliving its token would outlive a revoked session too.
                        yield EXPIRY_EVENT
                        return
                    wait = min(wait, left)
                try:
                    # A timer, not wait_for: wait_for makes a task per wait.
                    async with asyncio.timeout(wait):
                        live = await queue.get()
                except TimeoutError:
                    if expires_at is None or time.time() < expires_at:
                        yield ": heartbeat\n\n"
                    continue
                if live is _CLOSED:
                    return
                if sent is not None and live.get("id") in sent:
                    continue  # already replayed
                yield sse_event(live)
        finally:
            self.hub.unsubscribe(user_id, queue)
            self._open.pop(conn_id, None)
            with contextlib.suppress(RedisError, OSError):
                await self.slots.give_back(user_id, conn_id)

    async def run_leases(self) -> None:
        """Renew the slot leases of this replica's open streams, all at once, forever."""
        while True:
            await asyncio.sleep(self.heartbeat_s)
            held = [(user, conn) for conn, user in self._open.items()]
            try:
                await self.slots.renew_all(held, self.lease_s)
            except (RedisError, OSError) as exc:
                log.warning("stream_leases_not_renewed", error=str(exc)[:200], streams=len(held))


class StreamSlotsPort(Protocol):
    """Leased stream slots per user (inbox/slots.py)."""

    async def take(self, user_id: str, conn_id: str, lease_s: float, cap: int) -> bool:
        """Hold one more slot; False when `cap` are held."""
        ...

    async def renew_all(self, streams: Sequence[tuple[str, str]], lease_s: float) -> None:
        """Extend the leases of (user id, connection id) slots."""
        ...

    async def give_back(self, user_id: str, conn_id: str) -> None:
        """Free a slot."""
        ...
