"""Pure rules of moderation: reasons, notes, the queue's order, what a decision changes."""

from __future__ import annotations

from typing import Any

from shared.text import clean_text

#: The reason categories a reporter picks from (the wire's FlagReason).
REASONS = ("spam", "unsafe-medical-advice", "harassment", "other")
DECISIONS = ("hidden", "restored")
#: An admin's call on flags judged harmless: no decision on the item (nothing changes for
#: readers or its author, so no moderation-decided); its flags so far leave the open queue.
DISMISSED = "dismissed"
#: Longest reporter note kept (after cleaning); notes are for moderators only.
MAX_NOTE = 300


def clean_note(note: str | None) -> str | None:
    """A reporter's note as kept: cleaned, cut to MAX_NOTE, None when blank."""
    if note is None:
        return None
    cleaned = clean_text(note)[:MAX_NOTE].strip()
    return cleaned or None


def counts_after(counts: dict[str, int], reason: str) -> dict[str, int]:
    """Flags per reason once one more flag with `reason` is counted (every reason listed)."""
    after = {r: int(counts.get(r, 0)) for r in REASONS}
    after[reason] += 1
    return after


def top_reason(counts: dict[str, int]) -> str:
    """The reason most reporters gave ("other" when none); ties go to the listed order."""
    best = max(REASONS, key=lambda r: (int(counts.get(r, 0)), -REASONS.index(r)))
    return best if int(counts.get(best, 0)) > 0 else "other"


def changes(current: str | None, decision: str) -> bool:
    """Whether a decision changes the item: hiding a shown item or restoring a hidden one."""
    if decision == "hidden":
        return current != "hidden"
    return current == "hidden"


def excerpt(text: str, length: int = 200) -> str:
    """The start of an item's text, for the moderator's queue."""
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


def public_flag(kind: str, item_id: str, question_id: str, reason: str) -> dict[str, Any]:
    """What a reporter is told about their flag (never counts or other reporters)."""
    return {
        "item_kind": kind,
        "item_id": item_id,
        "question_id": question_id,
        "reason": reason,
        "flagged": True,
    }
