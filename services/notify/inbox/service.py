"""Use cases of the inboxes: list, mark read, replay for the live stream, keep bounded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from redis.exceptions import RedisError

from shared.backoff import until_done
from shared.errors import Invalid, NotFound
from shared.events import ModerationDecided, NotificationSent
from shared.logging import current_correlation_id, get_logger
from shared.metrics import EVENTS_PUBLISHED

from .. import SERVICE
from ..metrics import ALERTS
from ..settings import NotifySettings
from .domain import (
    Notification,
    digest_questions,
    fresh_item,
    is_notification_id,
    item_view,
    moderated_subjects,
    notification_id_floor,
    without_hidden_lines,
)
from .store import ModerationStep

log = get_logger("askdoc.notify.inbox")

#: Recipients whose inboxes one trim call bounds (a few reads each when nothing is due).
TRIM_BATCH = 200

#: Notifications one moderation script call hides or restores (a few commands each), so a
#: question with thousands of followers is many short calls, never one that stalls Redis.
MODERATION_BATCH = 500

#: How long notify remembers a moderation decision: new notifications about a hidden item
#: are kept out of the inboxes for as long as alerts about its question may still come.
MODERATION_TTL_S = 365 * 86400


class BadCursor(Invalid):
    """A paging cursor that is not a notification id."""

    code = "bad_cursor"


class NotificationNotFound(NotFound):
    """No such notification in the caller's inbox."""


@dataclass(frozen=True)
class ListInbox:
    """One page of a recipient's notifications, newest first."""

    recipient: str
    limit: int
    cursor: str | None = None
    unread_only: bool = False


@dataclass(frozen=True)
class MarkRead:
    """Mark one of the recipient's notifications read."""

    recipient: str
    notification_id: str


class InboxPort(Protocol):
    """What the inbox use cases need from their store."""

    async def page(
        self, recipient: str, unread_only: bool, before: str | None, count: int
    ) -> list[str]:
        """Ids newest first, strictly older than `before` when given."""
        ...

    async def newer(self, recipient: str, after: str, count: int) -> list[str]:
        """Ids strictly newer than `after`, oldest first."""
        ...

    async def notes(self, nids: Sequence[str]) -> list[dict[str, str]]:
        """The stored hashes of several notifications ({} for an expired one)."""
        ...

    async def unread_count(self, recipient: str) -> int:
        """How many notifications the recipient has not read."""
        ...

    async def mark_read(
        self, recipient: str, nid: str, about: Sequence[tuple[str, str]] = ()
    ) -> bool:
        """Mark one notification read; False when it no longer exists."""
        ...

    async def hidden(self, subjects: Sequence[tuple[str, str]]) -> list[bool]:
        """Whether a moderator hides each question ('q', id) or answer ('a', id) now."""
        ...

    async def index_old_digests(self) -> tuple[int, int]:
        """List older digests under their questions; (indexed, hidden now)."""
        ...

    async def about(
        self, subject: tuple[str, str], after: str | None, count: int
    ) -> tuple[list[tuple[str, str, str]], str | None]:
        """The next notifications about a question or answer: (id, recipient, item JSON)."""
        ...

    async def moderate(
        self,
        subject: tuple[str, str],
        version: int,
        hidden: bool,
        after: str | None,
        count: int,
        ttl_s: int,
    ) -> ModerationStep:
        """Hide or restore the next `count` notifications about a question or answer."""
        ...

    async def add_once(self, note: Notification, once: str) -> bool:
        """Commit the notification unless one with the same `once` name was committed."""
        ...

    async def trim(self, recipients: Sequence[str], max_items: int, floor_id: str) -> int:
        """Expire old and drop surplus notifications of each recipient; how many went."""
        ...


class InboxService:
    """Everyone's notifications: written by the alerts, read over HTTP and SSE."""

    def __init__(self, store: InboxPort, settings: NotifySettings) -> None:
        self.store = store
        self.settings = settings
        self._to_trim: set[str] = set()

    # --- what the alerts call ----------------------------------------------------------

    def notification(
        self,
        recipient: str,
        item: dict[str, Any],
        prefs: dict[str, Any],
        correlation_id: str | None = None,
    ) -> Notification:
        """An item for `recipient`, with its event and the external channels they chose."""
        external = self._external(prefs)
        event = NotificationSent(
            correlation_id=correlation_id or current_correlation_id(),
            producer=SERVICE,
            notification_id=item["id"],
            recipient_id=recipient,
            kind=item["kind"],
            question_id=item.get("question_id"),
            answer_id=item.get("answer_id"),
            channels=["inbox", "stream", *external],
            reason=item.get("reason") or {},
            urgent=bool(item.get("urgent")),
        )
        return Notification(recipient, item, tuple(external), event)

    def _external(self, prefs: dict[str, Any]) -> list[str]:
        channels = [c for c in prefs.get("channels", []) if c in ("webhook", "email")]
        if self.settings.smtp_host is None and "email" in channels:
            channels.remove("email")
        return channels

    def delivered(self, note: Notification) -> None:
        """Count and log a committed notification; its inbox is trimmed soon."""
        item = note.item
        EVENTS_PUBLISHED.labels(SERVICE, NotificationSent.stream).inc()
        ALERTS.labels(item["kind"], "delivered").inc()
        self._to_trim.add(note.recipient)
        log.info(
            "notification_sent",
            notification_id=item["id"],
            recipient_id=note.recipient,
            kind=item["kind"],
            question_id=item.get("question_id"),
            urgent=item.get("urgent", False),
        )

    def delivered_many(self, kind: str, recipients: Sequence[str]) -> None:
        """Count notifications a batch script committed; their inboxes are trimmed soon."""
        if recipients:
            EVENTS_PUBLISHED.labels(SERVICE, NotificationSent.stream).inc(len(recipients))
            ALERTS.labels(kind, "delivered").inc(len(recipients))
            self._to_trim.update(recipients)

    async def channel_off(self, recipient: str, channel: str, about_nid: str) -> None:
        """Tell the recipient a channel was switched off (once per notification that
        found out): a webhook that answered 410 Gone."""
        item = fresh_item(
            "channel-off",
            datetime.now(UTC),
            reason={"channel": channel, "notification_id": about_nid, "why": "gone"},
            reason_text=f"Your {channel} answered 410 Gone, so askdoc stopped sending to it. "
            "Set it again in your settings to resume.",
        )
        note = self.notification(recipient, item, {"channels": []})
        if await self.store.add_once(note, f"channel-off:{channel}:{about_nid}"):
            self.delivered(note)

    async def on_moderation_decided(self, event: ModerationDecided) -> int:
        """Take every notification about a hidden question or answer out of its recipient's
        inbox (listing, unread count, live replay), or bring it back on restore; the
        author's own notice of the decision stays. How many slices it took.

        Newest decision wins (`decision_version`); the same decision again does nothing
        new, so a redelivery, a restart half-way or a slice that races an alert is safe.
        """
        subject = ("q" if event.item_kind == "question" else "a", event.item_id)
        hidden = event.decision == "hidden"
        after: str | None = None
        slices = 0
        while True:
            step = await self.store.moderate(
                subject,
                event.decision_version,
                hidden,
                after,
                MODERATION_BATCH,
                MODERATION_TTL_S,
            )
            slices += 1
            if step.stale:
                log.info(
                    "inbox_moderation_stale",
                    item_kind=event.item_kind,
                    item_id=event.item_id,
                    version=event.decision_version,
                )
                return slices
            # Restored items count against the inbox bounds again.
            self._to_trim.update(step.restored_to)
            if step.after is None:
                break
            after = step.after
        log.info(
            "inbox_moderation_applied",
            item_kind=event.item_kind,
            item_id=event.item_id,
            decision=event.decision,
            version=event.decision_version,
            slices=slices,
        )
        return slices

    async def hidden_questions(self, question_ids: Collection[str]) -> set[str]:
        """Which of the questions a moderator hides now (one round trip)."""
        ordered = sorted(question_ids)
        flags = await self.store.hidden([("q", qid) for qid in ordered])
        return {qid for qid, hidden in zip(ordered, flags, strict=True) if hidden}

    async def withdrawn(
        self, subject: tuple[str, str], recipients: Collection[str]
    ) -> dict[str, list[str]]:
        """The notifications of `recipients` that hiding the question ('q', id) or answer
        ('a', id) takes out of their inboxes, by recipient: for the live streams open when
        the decision comes. Every item about it but a digest, which goes only once every
        question it lists is hidden (the author's notice is about nothing: it stays)."""
        found: dict[str, list[str]] = {}
        after: str | None = None
        while True:
            notes, after = await self.store.about(subject, after, MODERATION_BATCH)
            digests: list[tuple[str, str, list[str]]] = []
            for nid, recipient, raw in notes:
                if recipient not in recipients:
                    continue
                questions = digest_questions(json.loads(raw))
                if questions:
                    digests.append((nid, recipient, questions))
                else:
                    found.setdefault(recipient, []).append(nid)
            if digests:
                hidden = await self.hidden_questions({q for _, _, qs in digests for q in qs})
                if subject[0] == "q":
                    hidden.add(subject[1])  # hidden now, whether or not the inbox has applied it
                for nid, recipient, questions in digests:
                    if hidden.issuperset(questions):
                        found.setdefault(recipient, []).append(nid)
            if after is None:
                return found

    async def unread(self, nids: list[str]) -> set[str]:
        """Which of these notifications their recipients have not read."""
        notes = await self.store.notes(nids)
        return {
            nid for nid, note in zip(nids, notes, strict=True) if note and note.get("read") != "1"
        }

    async def restored(
        self, subject: tuple[str, str], recipients: Collection[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """The items of `recipients` that restoring the question ('q', id) or answer ('a',
        id) brings back, as the inbox shows them, by recipient: for the live streams open
        when the decision comes. An item stays out while the other thing it is about is
        hidden, and a digest comes back with the lines of the questions shown."""
        found: dict[str, list[dict[str, Any]]] = {}
        after: str | None = None
        while True:
            notes, after = await self.store.about(subject, after, MODERATION_BATCH)
            mine = [(nid, recipient) for nid, recipient, _ in notes if recipient in recipients]
            # Shown now, whether or not the inbox has applied the restore yet.
            stored = [
                {k: v for k, v in note.items() if k != "hidden"}
                for note in await self.store.notes([nid for nid, _ in mine])
            ]
            views = [item_view(note) for note in stored]
            others: set[tuple[str, str]] = set()
            for view in views:
                if view is not None:
                    others.update(moderated_subjects(view))
                    others.update(("q", q) for q in digest_questions(view))
            others.discard(subject)
            ordered = sorted(others)
            hidden = {
                s for s, h in zip(ordered, await self.store.hidden(ordered), strict=True) if h
            }
            hidden_qs = {item_id for kind, item_id in hidden if kind == "q"}
            for (_, recipient), view in zip(mine, views, strict=True):
                if view is None or (not moderated_subjects(view) and not digest_questions(view)):
                    continue  # expired, or a moderation notice (never taken out)
                if digest_questions(view):
                    shown = without_hidden_lines(view, hidden_qs)
                elif hidden.intersection(moderated_subjects(view)):
                    shown = None
                else:
                    shown = view
                if shown is not None:
                    found.setdefault(recipient, []).append(shown)
            if after is None:
                return found

    # --- reading -----------------------------------------------------------------------

    async def page(self, query: ListInbox) -> dict[str, Any]:
        """The recipient's notifications, newest first, with a cursor."""
        if query.cursor is not None and not is_notification_id(query.cursor):
            raise BadCursor("cursor is not valid; start without one")
        ids = await self.store.page(
            query.recipient, query.unread_only, query.cursor, query.limit + 1
        )
        more = len(ids) > query.limit
        ids = ids[: query.limit]
        items = [item for item in await self.items(ids) if item is not None]
        return {
            "items": items,
            "next_cursor": ids[-1] if more and ids else None,
            "unread_count": await self.store.unread_count(query.recipient),
        }

    async def items(self, nids: list[str]) -> list[dict[str, Any] | None]:
        """Inbox items as shown (None for an expired one, and for one about something a
        moderator hid), with read flag and delivery; a digest without the lines of the
        questions hidden since it was sent."""
        return await self._shown([item_view(note) for note in await self.store.notes(nids)])

    async def _shown(self, items: list[dict[str, Any] | None]) -> list[dict[str, Any] | None]:
        """The items less the digest lines of questions hidden now (one round trip)."""
        listed = {q for item in items if item is not None for q in digest_questions(item)}
        if not listed:
            return items
        hidden = await self.hidden_questions(listed)
        return [None if item is None else without_hidden_lines(item, hidden) for item in items]

    async def items_after(self, recipient: str, after: str) -> list[dict[str, Any]]:
        """The recipient's items newer than `after`, oldest first (SSE resume)."""
        if not is_notification_id(after):
            return []
        ids = await self.store.newer(recipient, after, self.settings.inbox_max_items)
        return [item for item in await self.items(ids) if item is not None]

    async def mark_read(self, cmd: MarkRead) -> dict[str, Any]:
        """Mark one of the recipient's notifications read; NotFound for anyone else's."""
        nid = cmd.notification_id
        missing = NotificationNotFound(f"no notification {nid!r} in your inbox")
        if not is_notification_id(nid):
            raise missing
        [note] = await self.store.notes([nid])
        [item] = await self._shown([item_view({**note, "read": "1"})])
        if item is None or note.get("recipient") != cmd.recipient:
            raise missing  # expired, someone else's, or about something hidden
        if not await self.store.mark_read(cmd.recipient, nid, moderated_subjects(item)):
            raise missing
        return item

    # --- bounds ------------------------------------------------------------------------

    async def trim_inboxes(self, now: datetime | None = None) -> int:
        """Bound the inboxes written since the last call; how many items went."""
        recipients, self._to_trim = self._to_trim, set()
        now_ms = int((now or datetime.now(UTC)).timestamp() * 1000)
        floor_ms = now_ms - self.settings.inbox_ttl_days * 86400 * 1000
        floor = notification_id_floor(max(floor_ms, 0))
        dropped = 0
        ordered = sorted(recipients)
        # Many inboxes per call, never so many that one call holds Redis up for long.
        for start in range(0, len(ordered), TRIM_BATCH):
            chunk = ordered[start : start + TRIM_BATCH]
            dropped += await self.store.trim(chunk, self.settings.inbox_max_items, floor)
        return dropped

    async def index_old_digests(self) -> None:
        """Background, once: digests made before they were listed under each question they
        list are listed there, and those whose questions are all hidden leave the listing
        and the unread count (as a hiding takes out a digest made since)."""
        indexed, hidden = await until_done(
            self.store.index_old_digests, "digest_indexing_failed", log
        )
        if indexed:
            log.info("old_digests_indexed", digests=indexed, hidden=hidden)

    async def run_trimmer(self) -> None:
        """Background loop: keep inboxes within their bounds."""
        while True:
            try:
                await self.trim_inboxes()
            except (RedisError, OSError) as exc:
                log.warning("inbox_trim_failed", error=str(exc)[:200])
            await asyncio.sleep(1.0)
