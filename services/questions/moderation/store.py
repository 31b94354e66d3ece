"""Redis persistence of moderation in the questions service.

A state change and its event share one hash slot (Redis Cluster), so each write lives
in the slot of the stream it publishes to, and the queue is a projection of both:

* flags, in the slot of ``askdoc.item-flagged`` (``F`` = ``{askdoc.item-flagged}:questions``):
  ``F:flag:{kind}:{id}:{user}`` the one flag of a reporter (its reason; never published),
  kept for ``retention_s`` (``ASKDOC_FLAG_RETENTION_S``) from the flag, set with it,
  ``F:flags:{kind}:{id}`` a hash of counts per reason, ``total`` and ``first_ms``,
  ``F:flags:{kind}:{id}:n:{N}`` a short-lived marker: of two flags racing for count N one lands;
* decisions, in the slot of ``askdoc.moderation-decided`` (``D``):
  ``D:item:{kind}:{id}`` the latest decision (``version``, ``decision``, ``reason``, ``by``,
  ``at``), ``D:item:{kind}:{id}:v:{N}`` the marker that makes version N land once;
* the projection, in the service's own slot (``T`` = ``runtime.tag`` + ``:mod``), written by
  the service's consumer of both streams through ``queue.lua``: ``T:item:{kind}:{id}``,
  ``T:queue`` (open items by most flags, oldest first), ``T:hidden`` (by decision time),
  ``T:notes:{kind}:{id}`` (latest notes), ``T:vis:{kind}`` (hidden ids: what the page,
  listings and related questions leave out), ``T:vis-version`` (a counter every applied
  hide or restore bumps, that readers' caches follow) and ``T:vis-signal`` (a stream of one
  entry appended to with each bump, which the long polls of the version block on),
  ``T:seen:{event_id}`` (dedupe markers).
  An admin's dismissal (flags judged harmless) is no event: it marks the flags counted so
  far as dealt with (``dismissed_count``) in the item's hash, through the same script, so the
  item leaves the open queue until a later flag counts past them.
  An item that is neither open nor hidden (restored or dismissed, not flagged since) is in no list:
  its hash and notes expire ``retention_s`` after that decision; a new flag or a hiding
  keeps them again (queue.lua, in the same call as the change).

What is kept for good: the counts per item (``F:flags:...``, the owner's totals every
item-flagged carries) and the latest decision per item (``D:item:...``, whose version
orders decisions), both one small hash per item, like the items themselves.
"""

from __future__ import annotations

import json
from typing import Any

from shared import streams
from shared.atomic import CommitResult, Committer, Txn
from shared.events import ItemFlagged, ModerationDecided
from shared.lua import script
from shared.redis import RedisClient

ALREADY_FLAGGED = "already_flagged"
COUNT_GUARD = "flag_count"
VERSION_GUARD = "decision_version"
#: How long a count or version marker guards against a racing write of the same number.
MARKER_TTL_S = 3600
#: How long the projection remembers an event it applied (redeliveries come within this).
SEEN_TTL_S = 7 * 24 * 3600
#: Latest reporter notes kept per item for the moderators.
NOTES_KEPT = 20

FLAG_TAG = streams.slot_tag(streams.ITEM_FLAGGED) + ":questions"
DECISION_TAG = streams.slot_tag(streams.MODERATION_DECIDED) + ":questions"


def visibility_key(tag: str, kind: str) -> str:
    """The hash of a kind's hidden item ids (field: id, value: decision version)."""
    return f"{tag}:mod:vis:{kind}"


def visibility_version_key(tag: str) -> str:
    """The counter every applied hide or restore bumps: what readers' caches follow."""
    return f"{tag}:mod:vis-version"


def visibility_signal_key(tag: str) -> str:
    """A stream of one entry, appended to with each bump of the visibility version: the
    processes holding long polls of the version block on it (XREAD) instead of polling."""
    return f"{tag}:mod:vis-signal"


def page_version_key(tag: str, qid: str) -> str:
    """The counter every change of a question's page bumps, so its built copy is rebuilt."""
    return f"{tag}:q:{qid}:page-version"


class ModerationStore:
    """Flags, decisions and the moderation queue projection."""

    def __init__(
        self, redis: RedisClient, committer: Committer, tag: str, retention_s: int
    ) -> None:
        self.redis = redis
        self.committer = committer
        self.tag = tag
        #: How long a reporter's flag, and a restored item's queue entry, are kept.
        self.retention_s = retention_s
        self._project = redis.register_script(script("services.questions.moderation", "queue.lua"))

    # --- flags (slot of askdoc.item-flagged) --------------------------------------------

    def _flag(self, kind: str, item_id: str, user: str) -> str:
        return f"{FLAG_TAG}:flag:{kind}:{item_id}:{user}"

    def _flags(self, kind: str, item_id: str) -> str:
        return f"{FLAG_TAG}:flags:{kind}:{item_id}"

    async def flags(self, kind: str, item_id: str) -> dict[str, str]:
        """An item's flag counts per reason, `total` and `first_ms` (empty if never flagged)."""
        found: dict[str, str] = await self.redis.hgetall(self._flags(kind, item_id))
        return found

    async def flag(self, reporter_id: str, event: ItemFlagged, first_ms: int) -> CommitResult:
        """Count a reporter's one flag on an item and publish item-flagged atomically.

        Guards, in order: the reporter's flag (a repeat stops here; `found` is its reason;
        it is remembered for `retention_s`, after which the reporter's flag counts anew),
        then the count marker (a racing flag took this count: read again and retry).
        """
        kind, item_id = event.item_kind, event.item_id
        key = self._flags(kind, item_id)
        marker = self._flag(kind, item_id, reporter_id)
        txn = Txn().absent(ALREADY_FLAGGED, marker, event.reason, self.retention_s)
        txn.absent(COUNT_GUARD, f"{key}:n:{event.flag_count}", "1", MARKER_TTL_S)
        txn.call("HINCRBY", key, event.reason, 1)
        txn.call("HSET", key, "total", event.flag_count, "first_ms", first_ms)
        return await self.committer.commit(txn.publish(event))

    async def reason_of(self, reporter_id: str, kind: str, item_id: str) -> str | None:
        """The reason a reporter gave when they flagged an item, or None."""
        found: str | None = await self.redis.get(self._flag(kind, item_id, reporter_id))
        return found

    # --- decisions (slot of askdoc.moderation-decided) ----------------------------------

    def _decision(self, kind: str, item_id: str) -> str:
        return f"{DECISION_TAG}:item:{kind}:{item_id}"

    async def decision(self, kind: str, item_id: str) -> dict[str, str]:
        """The latest decision on an item (empty if none)."""
        found: dict[str, str] = await self.redis.hgetall(self._decision(kind, item_id))
        return found

    async def visibility_version(self) -> int:
        """How many hides and restores the pages have taken so far."""
        return int(await self.redis.get(visibility_version_key(self.tag)) or 0)

    async def visibility_mark(self) -> str:
        """The last entry id of the visibility signal ("0-0" before the first bump)."""
        last = await self.redis.xrevrange(visibility_signal_key(self.tag), count=1)
        return str(last[0][0]) if last else "0-0"

    async def visibility_moved(self, mark: str, block_s: float) -> str:
        """Block up to `block_s` for a signal after `mark`; the newest entry id, or `mark`."""
        key = visibility_signal_key(self.tag)
        replies = await self.redis.xread({key: mark}, block=max(1, int(block_s * 1000)))
        # [[key, [(id, fields), ...]]], or empty when the block ran out
        return str(replies[0][1][-1][0]) if replies else mark

    async def decide(self, event: ModerationDecided, admin_id: str) -> CommitResult:
        """Record a decision and publish moderation-decided atomically (version N lands once)."""
        key = self._decision(event.item_kind, event.item_id)
        txn = Txn().absent(VERSION_GUARD, f"{key}:v:{event.decision_version}", "1", MARKER_TTL_S)
        txn.call(
            "HSET",
            key,
            "version",
            event.decision_version,
            "decision",
            event.decision,
            "reason",
            event.reason,
            "by",
            admin_id,
            "at",
            event.occurred_at.isoformat(),
        )
        return await self.committer.commit(txn.publish(event))

    # --- the queue projection (the service's own slot) ----------------------------------

    def _mod(self, name: str) -> str:
        return f"{self.tag}:mod:{name}"

    def _item(self, kind: str, item_id: str) -> str:
        return self._mod(f"item:{kind}:{item_id}")

    def _notes(self, kind: str, item_id: str) -> str:
        return self._mod(f"notes:{kind}:{item_id}")

    async def _apply(self, event_id: str, kind: str, item_id: str, args: dict[str, Any]) -> bool:
        return bool(await self._run(event_id, kind, item_id, args))

    async def _run(self, event_id: str, kind: str, item_id: str, args: dict[str, Any]) -> int:
        keys = [
            self._mod(f"seen:{event_id}"),
            self._item(kind, item_id),
            self._mod("queue"),
            self._mod("hidden"),
            self._notes(kind, item_id),
            visibility_key(self.tag, kind),
            page_version_key(self.tag, args["question_id"]),
            visibility_version_key(self.tag),
            visibility_signal_key(self.tag),
        ]
        args = {
            **args,
            "member": f"{kind}:{item_id}",
            "kind": kind,
            "item_id": item_id,
            "marker_ttl_s": SEEN_TTL_S,
            "retention_s": self.retention_s,
        }
        return int(await self._project(keys=keys, args=[json.dumps(args)]))

    async def project_flag(self, event: ItemFlagged) -> bool:
        """Count a flag in the queue (idempotent; the newest count wins)."""
        args: dict[str, Any] = {
            "event": "flag",
            "question_id": event.question_id,
            "at_ms": int(event.occurred_at.timestamp() * 1000),
            "flag_count": event.flag_count,
            "counts": json.dumps(event.counts),
            "first_ms": int(event.first_flagged_at.timestamp() * 1000),
            "notes_kept": NOTES_KEPT,
        }
        if event.note:
            args["note"] = event.note
        return await self._apply(str(event.event_id), event.item_kind, event.item_id, args)

    async def project_decision(self, event: ModerationDecided) -> bool:
        """Hide or show an item on the pages and move it in the queue (newest version wins)."""
        args = {
            "event": "decision",
            "question_id": event.question_id,
            "at_ms": int(event.occurred_at.timestamp() * 1000),
            "version": event.decision_version,
            "decision": event.decision,
            "reason": event.reason,
        }
        return await self._apply(str(event.event_id), event.item_kind, event.item_id, args)

    async def dismiss(
        self, kind: str, item_id: str, question_id: str, admin_id: str, at_ms: int
    ) -> int:
        """Take an item's flags counted so far off the open queue (it stays shown).

        Returns the flag count dismissed up to: 0 when the queue never counted a flag on it.
        """
        args = {"event": "dismiss", "question_id": question_id, "at_ms": at_ms, "by": admin_id}
        return await self._run(f"dismiss:{at_ms}", kind, item_id, args)

    async def queue_page(self, status: str, offset: int, count: int) -> list[dict[str, Any]]:
        """Items of the open queue (most flags, oldest first) or the hidden list (newest)."""
        members = await self.redis.zrange(
            self._mod("queue" if status == "open" else "hidden"),
            offset,
            offset + count - 1,
            desc=True,
        )
        if not members:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for member in members:
            kind, item_id = member.split(":", 1)
            pipe.hgetall(self._item(kind, item_id))
            pipe.lrange(self._notes(kind, item_id), 0, -1)
        replies = await pipe.execute()
        return [
            {**replies[i], "notes": replies[i + 1]} for i in range(0, len(replies), 2) if replies[i]
        ]
