"""Redis persistence of inboxes: notifications, their indexes and delivery status.

Inboxes share the slot of ``askdoc.notification-sent`` (the runtime tag), so a
notification, its event and its outbox entry commit together.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from shared import streams, tracing
from shared.atomic import CommitResult, Committer, Txn
from shared.events import WIRE_FIELD
from shared.redis import RedisClient

from ..delivery.store import OutboxStore, trace_fields
from ..scripts import lua
from .domain import Notification, digest_questions, moderated_subjects


@dataclass(frozen=True)
class ModerationStep:
    """What one slice of a moderation decision did: `stale` (a newer decision was seen,
    stop), where the next slice starts (None when the walk is done) and the recipients whose
    items came back."""

    stale: bool
    after: str | None
    restored_to: list[str]


def _glob_escape(text: str) -> str:
    """`text` matched literally by a SCAN pattern (the tag's braces are no glob, but [ is)."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class InboxStore:
    """Notifications by recipient: all, unread and read indexes, and the item hashes."""

    def __init__(
        self,
        redis: RedisClient,
        committer: Committer,
        tag: str,
        maxlen: int,
        ttl_s: int,
        outbox: OutboxStore,
    ) -> None:
        self.redis = redis
        self.committer = committer
        self.maxlen = maxlen
        self.ttl_s = ttl_s
        self.outbox = outbox
        self._tag = tag
        self._trim = redis.register_script(lua(__package__, "trim.lua"))
        self._moderate = redis.register_script(lua(__package__, "moderate.lua"))
        self._add_each_once = redis.register_script(lua(__package__, "add_each_once.lua"))
        self._index_digest = redis.register_script(lua(__package__, "index_digest.lua"))

    def _note_key(self, nid: str) -> str:
        # item JSON, recipient, read flag, and `d:<channel>` delivery status
        return f"{self._tag}:n:{nid}"

    def _inbox_key(self, recipient: str) -> str:
        # every id of the recipient, score 0: ids sort by creation time
        return f"{self._tag}:inbox:{recipient}"

    def _unread_key(self, recipient: str) -> str:
        return f"{self._tag}:unread:{recipient}"

    def _readset_key(self, recipient: str) -> str:
        # read ids, trimmed first
        return f"{self._tag}:readset:{recipient}"

    def _hidden_key(self, kind: str, item_id: str) -> str:
        # exists while a moderator keeps the question (q) or answer (a) hidden
        return f"{self._tag}:hidden:{kind}:{item_id}"

    def _decision_key(self, kind: str, item_id: str) -> str:
        # the newest moderation decision version seen for the question or answer
        return f"{self._tag}:mod-ver:{kind}:{item_id}"

    def _about_key(self, kind: str, item_id: str) -> str:
        # ids of the notifications about the question or answer, score 0
        return f"{self._tag}:about:{kind}:{item_id}"

    # --- writing ----------------------------------------------------------------------

    async def index_old_digests(self, batch: int = 500) -> tuple[int, int]:
        """List the digests made before digests were indexed under each question they list,
        and take out those whose questions are all hidden now (once: a marker records it).
        (digests indexed, digests hidden)."""
        done = f"{self._tag}:migrated:digest-about"
        if await self.redis.exists(done):
            return 0, 0
        indexed = hidden = 0
        pattern = _glob_escape(f"{self._tag}:n:") + "*"
        keys: list[str] = []
        async for key in self.redis.scan_iter(match=pattern, count=batch):
            keys.append(key)
            if len(keys) >= batch:
                i, h = await self._index_digests(keys)
                indexed, hidden, keys = indexed + i, hidden + h, []
        i, h = await self._index_digests(keys)
        await self.redis.set(done, "1")
        return indexed + i, hidden + h

    async def _index_digests(self, keys: list[str]) -> tuple[int, int]:
        if not keys:
            return 0, 0
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hget(key, "item")
        items = await pipe.execute()
        prefix = len(f"{self._tag}:n:")
        indexed = hidden = 0
        for key, raw in zip(keys, items, strict=True):
            if not raw or '"digest"' not in raw:
                continue  # cheap pre-check: the script reads the item again, atomically
            args = json.dumps({"tag": self._tag, "nid": key[prefix:], "ttl_s": self.ttl_s})
            done = int(await self._index_digest(keys=[key], args=[args]))
            indexed += done >= 1
            hidden += done == 2
        return indexed, hidden

    def add(self, txn: Txn, note: Notification) -> Txn:
        """Add to `txn`: the inbox item, its event and (if any channel) its outbox entry."""
        nid = note.id
        status: list[str] = ["d:inbox", "delivered"]
        for channel in note.external:
            status += [f"d:{channel}", "pending"]
        key = self._note_key(nid)
        item = json.dumps(note.item)
        subjects = moderated_subjects(note.item)
        # An item about something a moderator hid is kept, out of every index, until a
        # restore brings it back: decided inside the commit, so no decision slips between.
        hidden = [self._hidden_key(kind, item_id) for kind, item_id in subjects]
        txn.call("HSET", key, "item", item, "recipient", note.recipient, "read", 0, *status)
        if hidden:
            txn.call("HSET", key, "hidden", 1, when=hidden)
        txn.call("EXPIRE", key, self.ttl_s)
        for index in (self._inbox_key(note.recipient), self._unread_key(note.recipient)):
            txn.call("ZADD", index, 0, nid, unless=hidden)
            txn.call("EXPIRE", index, self.ttl_s)
        # A digest is about each question it lists: hiding one takes its line out when the
        # digest is read, and the whole digest once every line is hidden (moderate.lua).
        about = [*subjects, *(("q", qid) for qid in digest_questions(note.item))]
        for kind, item_id in about:
            txn.call("ZADD", self._about_key(kind, item_id), 0, nid)
            txn.call("EXPIRE", self._about_key(kind, item_id), self.ttl_s)
        txn.publish(note.event, self.maxlen)
        if note.external:
            self.outbox.enqueue(txn, nid, note.recipient, note.external)
        return txn

    async def add_once(self, note: Notification, once: str) -> bool:
        """Commit the notification unless one with the same `once` name was committed."""
        txn = Txn().absent("once", f"{self._tag}:once:{once}", ttl_s=self.ttl_s)
        result: CommitResult = await self.committer.commit(self.add(txn, note))
        return result.applied

    async def add_each_once(
        self, entries: Sequence[tuple[Notification, str]], once_ttl_s: int
    ) -> list[bool]:
        """Commit each notification unless its once-guard key exists (set to its id for
        `once_ttl_s`), in one script call (`add_each_once.lua`); which ones went in.

        Each is what `add` behind an `absent` guard writes, and no more: for a fan-out of
        notifications about the same things (a new answer's followers), which is why the
        hidden markers are looked at, and the :about: indexes written, once per call.
        """
        if not entries:
            return []
        subjects = moderated_subjects(entries[0][0].item)
        if any(moderated_subjects(note.item) != subjects for note, _ in entries):
            raise ValueError("add_each_once takes notifications about the same things")
        keys = [
            streams.NOTIFICATION_SENT,
            self.outbox.stream,
            *(self._about_key(kind, item_id) for kind, item_id in subjects),
            *(self._hidden_key(kind, item_id) for kind, item_id in subjects),
        ]
        header = {
            "tag": self._tag,
            "subjects": len(subjects),
            "ttl_inbox": self.ttl_s,
            "ttl_once": once_ttl_s,
            "wire": WIRE_FIELD,
            "trace": trace_fields(),
        }
        args = [json.dumps(header)]
        spans = []
        for note, once in entries:
            event = note.event
            # A producer span per event, as Txn.publish makes them.
            span = tracing.publishing(event.stream)
            if span is not None:
                event = event.model_copy(update={"traceparent": tracing.span_traceparent(span)})
            spans.append(span)
            args += [
                once,
                note.id,
                note.recipient,
                json.dumps(note.item),
                event.to_wire()[WIRE_FIELD],
                ",".join(note.external),
            ]
        replies = await self._add_each_once(keys=keys, args=args)
        entry_ids = [_text(r) for r in replies]
        for span, entry_id in zip(spans, entry_ids, strict=True):
            if span is not None:
                tracing.end_publish(span, entry_id or None)
        return [bool(entry_id) for entry_id in entry_ids]

    async def mark_read(
        self, recipient: str, nid: str, about: Sequence[tuple[str, str]] = ()
    ) -> bool:
        """Mark one notification read; False when it no longer exists. `about`: what it is
        about (`moderated_subjects`), so that an item hidden meanwhile stays out of the
        indexes (a restore puts it back among the read ones)."""
        hidden = [self._hidden_key(kind, item_id) for kind, item_id in about]
        txn = Txn().present("notification", self._note_key(nid))
        txn.call("HSET", self._note_key(nid), "read", 1)
        txn.call("ZREM", self._unread_key(recipient), nid)
        txn.call("ZADD", self._readset_key(recipient), 0, nid, unless=hidden)
        txn.call("EXPIRE", self._readset_key(recipient), self.ttl_s)
        result: CommitResult = await self.committer.commit(txn)
        return result.applied

    async def set_delivery(self, nid: str, channel: str, status: str) -> None:
        """Record a channel's delivery status on the notification (if it still exists)."""
        txn = Txn().present("notification", self._note_key(nid))
        await self.committer.commit(txn.call("HSET", self._note_key(nid), f"d:{channel}", status))

    async def trim(self, recipients: Sequence[str], max_items: int, floor_id: str) -> int:
        """Expire old and drop surplus notifications (oldest read first) of each recipient,
        in one script call for all of them; how many went."""
        if not recipients:
            return 0
        keys = [
            key
            for r in recipients
            for key in (self._inbox_key(r), self._unread_key(r), self._readset_key(r))
        ]
        args = json.dumps({"max_items": max_items, "floor": floor_id})
        replies = await self._trim(keys=keys, args=[args])
        dropped = [nid for ids in replies for nid in ids]
        if dropped:
            await self.redis.unlink(*[self._note_key(nid) for nid in dropped])
        return len(dropped)

    async def moderate(
        self,
        subject: tuple[str, str],
        version: int,
        hidden: bool,
        after: str | None,
        count: int,
        ttl_s: int,
    ) -> ModerationStep:
        """Hide or restore the next `count` notifications about a question ('q', id) or an
        answer ('a', id), after `after`, under decision `version` (`moderate.lua`)."""
        kind, item_id = subject
        keys = [
            self._decision_key(kind, item_id),
            self._hidden_key(kind, item_id),
            self._about_key(kind, item_id),
        ]
        args = {
            "tag": self._tag,
            "version": version,
            "hidden": hidden,
            "after": after or "",
            "count": count,
            "ttl_s": ttl_s,
            "inbox_ttl_s": self.ttl_s,
        }
        reply = await self._moderate(keys=keys, args=[json.dumps(args)])
        if _text(reply[0]) == "stale":
            return ModerationStep(stale=True, after=None, restored_to=[])
        after = _text(reply[1]) or None
        return ModerationStep(stale=False, after=after, restored_to=[_text(r) for r in reply[2:]])

    # --- reading ----------------------------------------------------------------------

    async def page(
        self, recipient: str, unread_only: bool, before: str | None, count: int
    ) -> list[str]:
        """Ids newest first, strictly older than `before` when given."""
        key = self._unread_key(recipient) if unread_only else self._inbox_key(recipient)
        start = f"({before}" if before else "+"
        ids: list[str] = await self.redis.zrange(
            key, start, "-", desc=True, bylex=True, offset=0, num=count
        )
        return ids

    async def newer(self, recipient: str, after: str, count: int) -> list[str]:
        """Ids strictly newer than `after`, oldest first (to replay a missed stream)."""
        ids: list[str] = await self.redis.zrange(
            self._inbox_key(recipient), f"({after}", "+", bylex=True, offset=0, num=count
        )
        return ids

    async def about(
        self, subject: tuple[str, str], after: str | None, count: int
    ) -> tuple[list[tuple[str, str, str]], str | None]:
        """The next `count` notifications about a question ('q', id) or an answer ('a', id)
        after `after`, as (id, recipient, item JSON), and where the next slice starts (None
        when this was the last)."""
        kind, item_id = subject
        start = f"({after}" if after else "-"
        ids: list[str] = await self.redis.zrange(
            self._about_key(kind, item_id), start, "+", bylex=True, offset=0, num=count
        )
        if not ids:
            return [], None
        pipe = self.redis.pipeline(transaction=False)
        for nid in ids:
            pipe.hmget(self._note_key(nid), "recipient", "item")
        found = [
            (nid, recipient, item)
            for nid, (recipient, item) in zip(ids, await pipe.execute(), strict=True)
            if recipient and item
        ]
        return found, ids[-1] if len(ids) >= count else None

    async def hidden(self, subjects: Sequence[tuple[str, str]]) -> list[bool]:
        """Whether a moderator hides each question ('q', id) or answer ('a', id) now."""
        if not subjects:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for kind, item_id in subjects:
            pipe.exists(self._hidden_key(kind, item_id))
        return [bool(n) for n in await pipe.execute()]

    async def notes(self, nids: Sequence[str]) -> list[dict[str, str]]:
        """The stored hashes of several notifications ({} for an expired one)."""
        if not nids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for nid in nids:
            pipe.hgetall(self._note_key(nid))
        return list(await pipe.execute())

    async def unread_count(self, recipient: str) -> int:
        """How many notifications the recipient has not read."""
        return int(await self.redis.zcard(self._unread_key(recipient)))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
