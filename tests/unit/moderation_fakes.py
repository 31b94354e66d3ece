"""A hand-written in-memory moderation store that keeps the port of the moderation part.

It keeps the Redis store's contract: the same guards in the same order (the reporter's
one flag, then the count; the decision version), nothing written when a guard refuses,
every published event in `events`, and a projection that ignores an event seen before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from services.questions.moderation.store import ALREADY_FLAGGED, COUNT_GUARD, VERSION_GUARD
from shared.atomic import CommitResult
from shared.events import Event, ItemFlagged, ModerationDecided


class FakeModerationStore:
    """Flags, decisions and the queue projection, in memory."""

    def __init__(self) -> None:
        self.flag_markers: dict[tuple[str, str, str], str] = {}
        self.flag_state: dict[tuple[str, str], dict[str, str]] = {}
        self.count_markers: set[tuple[str, str, int]] = set()
        self.decisions: dict[tuple[str, str], dict[str, str]] = {}
        self.events: list[Event] = []
        self.seen: set[str] = set()
        self.items: dict[str, dict[str, Any]] = {}
        #: Flags that land between a read and a commit (to test the retry on the count).
        self.racing_flags = 0
        #: Hides and restores applied to the pages so far.
        self.visibility = 0
        #: Set on each bump, as queue.lua appends to the visibility signal.
        self.signal = asyncio.Event()
        #: Calls of the visibility reads, by name (what the long polls cost the store).
        self.visibility_calls: dict[str, int] = {}

    async def flags(self, kind: str, item_id: str) -> dict[str, str]:
        return dict(self.flag_state.get((kind, item_id), {}))

    async def flag(self, reporter_id: str, event: ItemFlagged, first_ms: int) -> CommitResult:
        kind, item_id = event.item_kind, event.item_id
        found = self.flag_markers.get((kind, item_id, reporter_id))
        if found is not None:
            return CommitResult(False, ALREADY_FLAGGED, found)
        if self.racing_flags:
            self.racing_flags -= 1
            state = self.flag_state.setdefault((kind, item_id), {})
            total = int(state.get("total", 0)) + 1
            state.update(total=str(total), other=str(int(state.get("other", 0)) + 1))
            state.setdefault("first_ms", str(first_ms))
            self.count_markers.add((kind, item_id, total))
        if (kind, item_id, event.flag_count) in self.count_markers:
            return CommitResult(False, COUNT_GUARD, "1")
        self.flag_markers[(kind, item_id, reporter_id)] = event.reason
        self.count_markers.add((kind, item_id, event.flag_count))
        state = self.flag_state.setdefault((kind, item_id), {})
        state[event.reason] = str(int(state.get(event.reason, 0)) + 1)
        state.update(total=str(event.flag_count), first_ms=str(first_ms))
        self.events.append(event)
        return CommitResult(True, entry_ids=(f"{len(self.events)}-0",))

    async def reason_of(self, reporter_id: str, kind: str, item_id: str) -> str | None:
        return self.flag_markers.get((kind, item_id, reporter_id))

    async def decision(self, kind: str, item_id: str) -> dict[str, str]:
        return dict(self.decisions.get((kind, item_id), {}))

    async def decide(self, event: ModerationDecided, admin_id: str) -> CommitResult:
        key = (event.item_kind, event.item_id)
        if int(self.decisions.get(key, {}).get("version", 0)) >= event.decision_version:
            return CommitResult(False, VERSION_GUARD, "1")
        self.decisions[key] = {
            "version": str(event.decision_version),
            "decision": event.decision,
            "reason": event.reason,
            "by": admin_id,
        }
        self.events.append(event)
        return CommitResult(True, entry_ids=(f"{len(self.events)}-0",))

    def _item(self, kind: str, item_id: str, qid: str) -> dict[str, Any]:
        item = self.items.setdefault(f"{kind}:{item_id}", {"notes": []})
        item.update(kind=kind, item_id=item_id, question_id=qid)
        return item

    async def project_flag(self, event: ItemFlagged) -> bool:
        if str(event.event_id) in self.seen:
            return False
        self.seen.add(str(event.event_id))
        item = self._item(event.item_kind, event.item_id, event.question_id)
        if event.flag_count > int(item.get("flag_count", 0)):
            item.update(
                flag_count=str(event.flag_count),
                counts=json.dumps(event.counts),
                first_ms=str(int(event.first_flagged_at.timestamp() * 1000)),
            )
        at = int(event.occurred_at.timestamp() * 1000)
        item["last_flagged_ms"] = str(max(at, int(item.get("last_flagged_ms", 0))))
        if event.note:
            item["notes"].insert(0, event.note)
        return True

    async def project_decision(self, event: ModerationDecided) -> bool:
        if str(event.event_id) in self.seen:
            return False
        self.seen.add(str(event.event_id))
        item = self._item(event.item_kind, event.item_id, event.question_id)
        if event.decision_version > int(item.get("decision_version", 0)):
            item.update(
                decision_version=str(event.decision_version),
                decision=event.decision,
                reason=event.reason,
                decided_ms=str(int(event.occurred_at.timestamp() * 1000)),
            )
            self.visibility += 1
            self.signal.set()
            self.signal = asyncio.Event()
        return True

    def _count(self, name: str) -> None:
        self.visibility_calls[name] = self.visibility_calls.get(name, 0) + 1

    async def visibility_version(self) -> int:
        self._count("version")
        return self.visibility

    async def visibility_mark(self) -> str:
        self._count("mark")
        return str(self.visibility)

    async def visibility_moved(self, mark: str, block_s: float) -> str:
        self._count("moved")
        if str(self.visibility) == mark:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(block_s):
                    await self.signal.wait()
        return str(self.visibility)

    async def dismiss(
        self, kind: str, item_id: str, question_id: str, admin_id: str, at_ms: int
    ) -> int:
        item = self.items.get(f"{kind}:{item_id}")
        if item is None:
            return 0
        count = int(item.get("flag_count", 0))
        if count > int(item.get("dismissed_count", 0)):
            item.update(dismissed_count=str(count), dismissed_ms=str(at_ms), dismissed_by=admin_id)
        return count

    async def queue_page(self, status: str, offset: int, count: int) -> list[dict[str, Any]]:
        def is_open(item: dict[str, Any]) -> bool:
            return (
                item.get("decision") != "hidden"
                and int(item.get("flag_count", 0)) > int(item.get("dismissed_count", 0))
                and int(item.get("last_flagged_ms", 0)) > int(item.get("decided_ms", 0))
            )

        if status == "open":
            rows = [i for i in self.items.values() if is_open(i)]
            rows.sort(key=lambda i: (-int(i["flag_count"]), int(i["first_ms"])))
        else:
            rows = [i for i in self.items.values() if i.get("decision") == "hidden"]
            rows.sort(key=lambda i: -int(i["decided_ms"]))
        return [dict(r) for r in rows[offset : offset + count]]
