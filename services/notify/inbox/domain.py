"""Inbox items and notification ids: pure, unit-tested without Redis."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.events import NotificationSent


@dataclass(frozen=True)
class Notification:
    """One alert ready to commit: the inbox item, its event, its external channels."""

    recipient: str
    item: dict[str, Any]
    external: tuple[str, ...]
    event: NotificationSent

    @property
    def id(self) -> str:
        """The notification id (also the event's and every delivery's idempotency key)."""
        return str(self.item["id"])


_NOTIFICATION_ID = re.compile(r"^n[0-9a-f]{12}[0-9a-f]{12}$")


def new_notification_id(now_ms: int, random_hex: str | None = None) -> str:
    """A notification id that sorts by creation time: 'n' + 12 hex ms + 12 random hex."""
    suffix = random_hex if random_hex is not None else secrets.token_hex(6)
    return f"n{now_ms:012x}{suffix}"


def is_notification_id(text: str) -> bool:
    """Whether `text` has the form of a notification id (for cursors and Last-Event-ID)."""
    return _NOTIFICATION_ID.match(text) is not None


def notification_id_floor(ms: int) -> str:
    """The smallest possible id created at `ms`: ids below it are older."""
    return f"n{ms:012x}"


def new_item(nid: str, kind: str, now: datetime, **fields: Any) -> dict[str, Any]:
    """An inbox item: no question or answer body text, ever."""
    base: dict[str, Any] = {
        "id": nid,
        "kind": kind,
        "question_id": None,
        "answer_id": None,
        "created_at": now.isoformat(),
        "urgent": False,
        "reason": {},
        "reason_text": "",
        "title": None,
    }
    base.update(fields)
    base.setdefault("summary", base["reason_text"])
    return base


def fresh_item(kind: str, now: datetime, **fields: Any) -> dict[str, Any]:
    """A new inbox item created at `now`, with a fresh notification id."""
    return new_item(new_notification_id(int(now.timestamp() * 1000)), kind, now, **fields)


#: Kinds that tell an author what a moderator decided on their own item: they stay when
#: the item is hidden (every other notification about it leaves its recipient's inbox).
MODERATION_KINDS = frozenset({"item-hidden", "item-restored"})


def moderated_subjects(item: dict[str, Any]) -> list[tuple[str, str]]:
    """What a moderator may hide that the item is about: ('q', question id) and ('a',
    answer id); none for a moderation notice, which its author keeps."""
    if item.get("kind") in MODERATION_KINDS:
        return []
    subjects = []
    if item.get("question_id"):
        subjects.append(("q", str(item["question_id"])))
    if item.get("answer_id"):
        subjects.append(("a", str(item["answer_id"])))
    return subjects


def digest_questions(item: dict[str, Any]) -> list[str]:
    """The questions a digest lists (none for any other kind): a moderator hiding one takes
    its line out of the digest, and the digest itself once every line is hidden."""
    if item.get("kind") != "digest":
        return []
    return [str(line["question_id"]) for line in item.get("items") or []]


def digest_texts(count: int) -> tuple[str, str]:
    """A digest's title and reason text for `count` questions."""
    plural = "s" if count != 1 else ""
    return (
        f"{count} question{plural} held over your daily cap",
        f"digest of {count} question alert{plural} held over your daily cap",
    )


def without_hidden_lines(item: dict[str, Any], hidden: set[str]) -> dict[str, Any] | None:
    """A digest as shown while the questions in `hidden` are hidden: their lines left out
    (counts and texts too), None when no line is left. Any other item as it is."""
    questions = digest_questions(item)
    if not hidden.intersection(questions):
        return item
    lines = [line for line in item["items"] if line["question_id"] not in hidden]
    if not lines:
        return None
    title, reason_text = digest_texts(len(lines))
    reason = dict(item.get("reason") or {})
    reason["count"] = len(lines)
    reason["question_ids"] = [line["question_id"] for line in lines]
    shown = {**item, "items": lines, "reason": reason, "title": title}
    shown["reason_text"] = shown["summary"] = reason_text
    return shown


def item_view(note: dict[str, str]) -> dict[str, Any] | None:
    """A stored notification hash as the inbox shows it (None for an expired one, and for
    one about an item a moderator hid)."""
    if not note or "item" not in note or note.get("hidden") == "1":
        return None
    item: dict[str, Any] = json.loads(note["item"])
    item["read"] = note.get("read") == "1"
    item["delivery"] = {k[2:]: v for k, v in note.items() if k.startswith("d:")}
    return item
