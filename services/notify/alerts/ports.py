"""What the alert use cases need from their store and from the directory (ports)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..inbox.domain import Notification
from .store import AlertChange, BatchOutcome, HeldEntry


class AlertPrefs(Protocol):
    """What the alerts read of the directory: each doctor's alert preferences."""

    async def prefs(self, doctor_id: str) -> dict[str, Any]:
        """A doctor's alert preferences and channels ({} for someone not listed)."""
        ...

    async def prefs_many(self, doctor_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The alert preferences of several doctors."""
        ...


class AlertPort(Protocol):
    """What the alert use cases need from their store."""

    async def commit(self, change: AlertChange) -> bool:
        """Apply the change if every guard holds; whether it was applied."""
        ...

    async def commit_many(self, changes: Sequence[AlertChange]) -> list[bool]:
        """Several changes at once; each stands or falls on its own guards."""
        ...

    async def notify_each_once(
        self, alerts: Sequence[tuple[Notification, Sequence[str]]]
    ) -> list[bool]:
        """Notifications about the same things, each once under its guard, at once."""
        ...

    async def notify_once(self, note: Notification, guard: Sequence[str]) -> bool:
        """One notification, once under its guard; whether it went out."""
        ...

    async def alert_batch(
        self, header: dict[str, Any], questions: Sequence[tuple[str, str, str]]
    ) -> list[BatchOutcome]:
        """Alert a batch of questions' matched doctors at once (what goes out now)."""
        ...

    async def sent_counts(self, doctor_days: Sequence[tuple[str, str]]) -> list[int]:
        """Alerts delivered to each (doctor, local day)."""
        ...

    async def urgent_rank(self, asker_id: str, day: str, question_id: str) -> int:
        """Count an asker's urgent question for the day (once per question); how many so far."""
        ...

    async def urgent_paged(self, doctor_ids: Sequence[str], hour: str) -> list[int]:
        """Urgent alerts each doctor got in this UTC hour."""
        ...

    async def note_urgent_paged(self, doctor_id: str, hour: str, question_id: str) -> None:
        """Count an urgent alert a doctor got this hour (once per question)."""
        ...

    async def remember_question(
        self, question_id: str, asker_id: str, title: str, ttl_s: int
    ) -> None:
        """Keep who asked a question and its title."""
        ...

    async def question(self, question_id: str) -> dict[str, str]:
        """The projected question ({} when not seen yet)."""
        ...

    async def apply_follow(
        self, question_id: str, user_id: str, version: int, following: bool, ttl_s: int
    ) -> bool:
        """Record a follow change unless a newer one was seen; whether it was applied."""
        ...

    async def followers(self, question_id: str, after: str | None, count: int) -> list[str]:
        """A page of a question's followers, by user id, after `after`."""
        ...

    async def asker_follows(self, question_id: str, asker_id: str) -> bool:
        """Whether the asker still follows (unless an unfollow of theirs was seen)."""
        ...

    async def vote_state(self, answer_id: str) -> tuple[int, int]:
        """(tally version seen, helpful count last alerted on) of an answer."""
        ...

    async def due_doctors(self, now_ms: int, count: int) -> list[str]:
        """Doctors whose earliest held alert is due."""
        ...

    async def held(self, doctor_id: str) -> list[HeldEntry]:
        """A doctor's held alerts, earliest first."""
        ...

    async def lock_release(self, doctor_id: str, ttl_s: int) -> bool:
        """Take the per-doctor release lock."""
        ...

    async def unlock_release(self, doctor_id: str) -> None:
        """Give the release lock back."""
        ...

    async def refresh_due(self, doctor_id: str) -> None:
        """Point the due index at the doctor's earliest held alert, or drop the doctor."""
        ...

    async def nudge(self, doctor_id: str, now_ms: int) -> None:
        """Have the releaser look at a doctor's held alerts now."""
        ...
