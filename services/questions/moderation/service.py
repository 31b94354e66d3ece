"""Use cases of moderation: flag an item, decide on it, read the queue, keep the projection."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from shared.atomic import CommitResult
from shared.errors import Conflict, Forbidden, Invalid, NotFound
from shared.events import ItemFlagged, ModerationDecided
from shared.logging import current_correlation_id, get_logger
from shared.metrics import EVENTS_PUBLISHED

from . import domain
from .store import ALREADY_FLAGGED, COUNT_GUARD
from .watch import VisibilityWatch

log = get_logger("askdoc.questions.moderation")

SERVICE = "questions"
#: How often a flag is retried when other flags on the same item land in between.
FLAG_ATTEMPTS = 8

Kind = Literal["question", "answer"]


@dataclass(frozen=True)
class ItemRef:
    """A question (answer_id None) or one answer on a question's page."""

    question_id: str
    answer_id: str | None = None

    @property
    def kind(self) -> Kind:
        """What the item is."""
        return "question" if self.answer_id is None else "answer"

    @property
    def item_id(self) -> str:
        """The item's own id."""
        return self.answer_id or self.question_id


@dataclass(frozen=True)
class FlagItem:
    """A signed-in user flags a question or an answer (one flag per user per item)."""

    reporter_id: str
    item: ItemRef
    reason: str
    note: str | None = None


@dataclass(frozen=True)
class DecideItem:
    """An admin hides an item from pages and listings, or restores it."""

    admin_id: str
    item: ItemRef
    decision: str
    reason: str | None = None


class ItemHidden(Conflict):
    """A hidden item's flags are not dismissed: restoring it takes it off the queue."""

    code = "item_hidden"


class ItemNotFound(NotFound):
    """No such question, or no such answer on the question's page (or it is hidden)."""

    code = "not_found"


class OwnItem(Forbidden):
    """Nobody flags their own question or answer."""

    code = "own_item"


class UnknownReason(Invalid):
    """A reason or decision outside the vocabulary."""

    code = "unknown_reason"


class BadQueueCursor(Invalid):
    """A queue cursor this service did not hand out."""

    code = "bad_cursor"


class ModerationConflict(Conflict):
    """Another write on the same item landed first; reload and retry."""

    code = "moderation_conflict"


class ItemReader(Protocol):
    """What moderation reads of the questions service's own items (hidden ones too)."""

    async def get(self, qid: str) -> dict[str, Any] | None:
        """A stored question, or None."""
        ...

    async def page_answer(self, qid: str, aid: str) -> dict[str, Any] | None:
        """One answer on the question's page, or None."""
        ...


class ModerationStorePort(Protocol):
    """What the moderation use cases need from their store."""

    async def flags(self, kind: str, item_id: str) -> dict[str, str]:
        """Counts per reason, `total` and `first_ms` of an item's flags."""
        ...

    async def flag(self, reporter_id: str, event: ItemFlagged, first_ms: int) -> CommitResult:
        """Count one reporter's flag and publish item-flagged atomically."""
        ...

    async def reason_of(self, reporter_id: str, kind: str, item_id: str) -> str | None:
        """The reason a reporter gave, or None if they never flagged the item."""
        ...

    async def decision(self, kind: str, item_id: str) -> dict[str, str]:
        """The latest decision on an item (empty if none)."""
        ...

    async def visibility_version(self) -> int:
        """How many hides and restores the pages have taken so far."""
        ...

    async def visibility_mark(self) -> str:
        """Where the signal of the visibility version's moves is now."""
        ...

    async def visibility_moved(self, mark: str, block_s: float) -> str:
        """Wait up to `block_s` for a move after `mark`; the new mark, or `mark` if none."""
        ...

    async def decide(self, event: ModerationDecided, admin_id: str) -> CommitResult:
        """Record a decision and publish moderation-decided atomically."""
        ...

    async def project_flag(self, event: ItemFlagged) -> bool:
        """Count a flag in the queue projection (idempotent)."""
        ...

    async def project_decision(self, event: ModerationDecided) -> bool:
        """Apply a decision to the queue and the pages' visibility (idempotent)."""
        ...

    async def queue_page(self, status: str, offset: int, count: int) -> list[dict[str, Any]]:
        """A page of the open queue or the hidden list."""
        ...

    async def dismiss(
        self, kind: str, item_id: str, question_id: str, admin_id: str, at_ms: int
    ) -> int:
        """Take the item's flags so far off the open queue; the flag count dismissed up to."""
        ...


class ModerationService:
    """Flags from readers, decisions from admins, and the queue admins work from."""

    def __init__(
        self,
        store: ModerationStorePort,
        items: ItemReader,
        visibility: VisibilityWatch | None = None,
    ) -> None:
        self.store = store
        self.items = items
        #: The one follower of the visibility version that every long poll waits on; its
        #: `watch_visibility` is the service's background work (started once ready, ended at stop).
        self.visibility = visibility or VisibilityWatch(store)

    async def _author(self, item: ItemRef) -> tuple[str, dict[str, Any]]:
        """The item's author id and the item (hidden or not); ItemNotFound if none."""
        question = await self.items.get(item.question_id)
        if question is None:
            raise ItemNotFound(f"no question {item.question_id!r}")
        if item.answer_id is None:
            return str(question["asker_id"]), question
        answer = await self.items.page_answer(item.question_id, item.answer_id)
        if answer is None:
            raise ItemNotFound(f"no answer {item.answer_id!r} on this question's page")
        return str(answer["doctor"]["id"]), answer

    async def _hidden(self, item: ItemRef) -> bool:
        if (await self.store.decision("question", item.question_id)).get("decision") == "hidden":
            return True
        if item.answer_id is None:
            return False
        return (await self.store.decision("answer", item.answer_id)).get("decision") == "hidden"

    async def flag(self, command: FlagItem) -> dict[str, Any]:
        """Count the reporter's flag once and tell the moderators; a repeat changes nothing."""
        item = command.item
        if command.reason not in domain.REASONS:
            raise UnknownReason(f"reason must be one of {', '.join(domain.REASONS)}")
        author, _ = await self._author(item)
        if await self._hidden(item):
            raise ItemNotFound(f"no {item.kind} {item.item_id!r}")
        if author == command.reporter_id:
            raise OwnItem("you cannot flag your own question or answer")
        note = domain.clean_note(command.note)
        for _ in range(FLAG_ATTEMPTS):
            state = await self.store.flags(item.kind, item.item_id)
            now = datetime.now(UTC)
            first_ms = int(state.get("first_ms") or now.timestamp() * 1000)
            counts = domain.counts_after(
                {r: int(state.get(r, 0)) for r in domain.REASONS}, command.reason
            )
            event = ItemFlagged(
                correlation_id=current_correlation_id(),
                producer=SERVICE,
                item_kind=item.kind,
                item_id=item.item_id,
                question_id=item.question_id,
                reason=command.reason,  # type: ignore[arg-type]
                note=note,
                counts=counts,  # type: ignore[arg-type]
                flag_count=int(state.get("total", 0)) + 1,
                first_flagged_at=datetime.fromtimestamp(first_ms / 1000, UTC),
                occurred_at=now,
            )
            result = await self.store.flag(command.reporter_id, event, first_ms)
            if result.applied:
                EVENTS_PUBLISHED.labels(SERVICE, event.stream).inc()
                log.info("item_flagged", item_kind=item.kind, item_id=item.item_id)
                return domain.public_flag(item.kind, item.item_id, item.question_id, event.reason)
            if result.failed_guard == ALREADY_FLAGGED:
                reason = result.found or command.reason
                return domain.public_flag(item.kind, item.item_id, item.question_id, reason)
            if result.failed_guard != COUNT_GUARD:
                break
        raise ModerationConflict("many flags on this item at once; retry")

    async def my_flag(self, reporter_id: str, item: ItemRef) -> dict[str, Any] | None:
        """The reporter's own flag on an item, or None."""
        reason = await self.store.reason_of(reporter_id, item.kind, item.item_id)
        if reason is None:
            return None
        return domain.public_flag(item.kind, item.item_id, item.question_id, reason)

    async def decide(self, command: DecideItem) -> dict[str, Any]:
        """Hide or restore an item and tell its author; deciding what already holds is a no-op.

        `dismissed` is no decision on the item: see `dismiss`.
        """
        item = command.item
        if command.decision == domain.DISMISSED:
            return await self.dismiss(command)
        if command.decision not in domain.DECISIONS:
            choices = (*domain.DECISIONS, domain.DISMISSED)
            raise UnknownReason(f"decision must be one of {', '.join(choices)}")
        if command.reason is not None and command.reason not in domain.REASONS:
            raise UnknownReason(f"reason must be one of {', '.join(domain.REASONS)}")
        author, _ = await self._author(item)
        current = await self.store.decision(item.kind, item.item_id)
        version = int(current.get("version", 0))
        if not domain.changes(current.get("decision"), command.decision):
            return self._decided(item, current.get("decision") or "restored", current, version)
        reason = command.reason or current.get("reason")
        if reason is None:
            counts = await self.store.flags(item.kind, item.item_id)
            reason = domain.top_reason({r: int(counts.get(r, 0)) for r in domain.REASONS})
        event = ModerationDecided(
            correlation_id=current_correlation_id(),
            producer=SERVICE,
            item_kind=item.kind,
            item_id=item.item_id,
            question_id=item.question_id,
            author_id=author,
            decision=command.decision,  # type: ignore[arg-type]
            reason=reason,  # type: ignore[arg-type]
            decision_version=version + 1,
        )
        result = await self.store.decide(event, command.admin_id)
        if not result.applied:
            raise ModerationConflict("another moderator decided on this item just now; reload")
        EVENTS_PUBLISHED.labels(SERVICE, event.stream).inc()
        log.info(
            "moderation_decided",
            item_kind=item.kind,
            item_id=item.item_id,
            decision=event.decision,
            version=event.decision_version,
        )
        return self._decided(item, event.decision, {"reason": reason}, event.decision_version)

    async def dismiss(self, command: DecideItem) -> dict[str, Any]:
        """Clear an item's open flags: it leaves the open queue and stays shown.

        Nothing happened to the item, so nothing is published and its author is not told;
        a flag counted after the ones dismissed puts it back in the queue. A repeat is a
        no-op; a hidden item is refused (restoring it is what takes it off the queue).
        """
        item = command.item
        if command.reason is not None:
            raise UnknownReason("a dismissal tells no one, so it takes no reason")
        await self._author(item)
        current = await self.store.decision(item.kind, item.item_id)
        if current.get("decision") == "hidden":
            raise ItemHidden(f"the {item.kind} is hidden: restore it instead")
        at_ms = int(datetime.now(UTC).timestamp() * 1000)
        dismissed = await self.store.dismiss(
            item.kind, item.item_id, item.question_id, command.admin_id, at_ms
        )
        log.info("flags_dismissed", item_kind=item.kind, item_id=item.item_id, flags=dismissed)
        reply = self._decided(item, domain.DISMISSED, {}, int(current.get("version", 0)))
        return {**reply, "dismissed_flags": dismissed}

    @staticmethod
    def _decided(
        item: ItemRef, decision: str, state: dict[str, str], version: int
    ) -> dict[str, Any]:
        return {
            "item_kind": item.kind,
            "item_id": item.item_id,
            "question_id": item.question_id,
            "decision": decision,
            "reason": state.get("reason"),
            "decision_version": version,
        }

    async def visibility_version(self, after: int | None, wait_s: float) -> int:
        """The visibility version; waits up to `wait_s` for one past `after` (long poll).

        Readers that keep pages or lists (the web) hold this open and drop what they keep
        when it moves, so a hidden question leaves every cached list once it is applied.
        """
        if after is None or wait_s <= 0:
            return await self.store.visibility_version()
        seen = await self.visibility.wait(after, wait_s)
        # None: the watcher was out of step all along (not yet started, Redis restarting).
        return seen if seen is not None else await self.store.visibility_version()

    async def queue(self, status: str, limit: int, cursor: str | None) -> dict[str, Any]:
        """Flagged items (most flags, oldest first) or hidden ones, with counts and notes."""
        if cursor is not None and not cursor.isdigit():
            raise BadQueueCursor("cursor is not valid; start without one")
        offset = int(cursor or 0)
        rows = await self.store.queue_page(status, offset, limit)
        items = [await self._queue_item(row) for row in rows]
        next_cursor = str(offset + limit) if len(rows) == limit else None
        return {"status": status, "items": items, "next_cursor": next_cursor}

    async def _queue_item(self, row: dict[str, Any]) -> dict[str, Any]:
        kind = row["kind"]
        qid = row["question_id"]
        ref = ItemRef(qid, row["item_id"] if kind == "answer" else None)
        question = await self.items.get(qid)
        title = question["title"] if question else ""
        text = ""
        if ref.answer_id is not None:
            answer = await self.items.page_answer(qid, ref.answer_id)
            text = answer["body"] if answer else ""
        elif question:
            text = question["body"]

        def at(field: str) -> str | None:
            ms = row.get(field)
            return datetime.fromtimestamp(int(ms) / 1000, UTC).isoformat() if ms else None

        counts = json.loads(row.get("counts") or "{}")
        return {
            "item_kind": kind,
            "item_id": ref.item_id,
            "question_id": qid,
            "title": title,
            "excerpt": domain.excerpt(text),
            "counts": {r: int(counts.get(r, 0)) for r in domain.REASONS},
            "flag_count": int(row.get("flag_count") or 0),
            "first_flagged_at": at("first_ms"),
            "last_flagged_at": at("last_flagged_ms"),
            "status": "hidden" if row.get("decision") == "hidden" else "open",
            "last_decision": row.get("decision"),
            "hidden": row.get("decision") == "hidden",
            "reason": row.get("reason"),
            "decided_at": at("decided_ms"),
            "dismissed_flags": int(row.get("dismissed_count") or 0),
            "dismissed_at": at("dismissed_ms"),
            "notes": list(row.get("notes") or []),
        }

    async def on_item_flagged(self, event: ItemFlagged) -> None:
        """Count the flag in the moderators' queue (a redelivery changes nothing)."""
        if await self.store.project_flag(event):
            log.info("queue_flag_counted", item_kind=event.item_kind, item_id=event.item_id)

    async def on_moderation_decided(self, event: ModerationDecided) -> None:
        """Take a hidden item off the pages (or bring it back) and move it in the queue."""
        if await self.store.project_decision(event):
            log.info(
                "queue_decision_applied",
                item_kind=event.item_kind,
                item_id=event.item_id,
                decision=event.decision,
            )
