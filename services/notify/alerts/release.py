"""Held alerts: released when quiet hours end, or together in the next day's digest."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from shared.logging import get_logger

from ..inbox.domain import Notification, digest_texts, fresh_item
from ..inbox.service import InboxService
from ..settings import NotifySettings
from . import domain
from .ports import AlertPort, AlertPrefs
from .service import now_ms, quiet_hours
from .store import AlertChange, HeldEntry

log = get_logger("askdoc.notify")

RELEASE_LOCK_TTL_S = 30
DUE_BATCH = 100


class HeldAlerts:
    """Releases or re-plans the held alerts of every doctor who has one due."""

    def __init__(
        self,
        store: AlertPort,
        directory: AlertPrefs,
        inbox: InboxService,
        settings: NotifySettings,
    ) -> None:
        self.store = store
        self.directory = directory
        self.inbox = inbox
        self.settings = settings

    async def nudge(self, doctor_id: str, now: datetime) -> None:
        """Re-plan a doctor's held alerts at once (their quiet hours or cap changed)."""
        await self.store.nudge(doctor_id, now_ms(now))

    async def release_due(self, now: datetime | None = None) -> int:
        """Release or re-plan the held alerts of every doctor who has one due; how many."""
        now = now or datetime.now(UTC)
        doctors = await self.store.due_doctors(now_ms(now), DUE_BATCH)
        for doctor_id in doctors:
            await self._release(doctor_id, now)
        return len(doctors)

    async def _release(self, doctor_id: str, now: datetime) -> None:
        if not await self.store.lock_release(doctor_id, RELEASE_LOCK_TTL_S):
            return
        try:
            holds = {entry.data["hold_id"]: entry for entry in await self.store.held(doctor_id)}
            held = [
                domain.HeldAlert(
                    hold_id,
                    datetime.fromtimestamp(entry.release_ms / 1000, UTC),
                    domain.HoldReason(entry.data["reason"]),
                )
                for hold_id, entry in holds.items()
            ]
            prefs = await self.directory.prefs(doctor_id)
            if prefs.get("verified") is False:
                await self._drop(doctor_id, list(holds.values()))
                return
            qh = prefs.get("quiet_hours")
            day = domain.day_key(str(qh["tz"]) if qh else None, now)
            [sent] = await self.store.sent_counts([(doctor_id, day)])
            plan = domain.plan_release(
                held,
                quiet_hours=quiet_hours(prefs),
                daily_cap=prefs.get("daily_cap"),
                sent_today=sent,
                now_utc=now,
            )
            if not plan.empty:
                await self._apply(doctor_id, plan, holds, prefs, day, now)
        finally:
            await self.store.refresh_due(doctor_id)
            await self.store.unlock_release(doctor_id)

    async def _drop(self, doctor_id: str, held: list[HeldEntry]) -> None:
        """A doctor suspended (or back to pending) while alerts were held: they never go out."""
        change = AlertChange()
        for entry in held:
            change.unhold(doctor_id, entry.member)
        if held and await self.store.commit(change):
            log.info("held_alerts_dropped", doctor_id=doctor_id, dropped=len(held))

    async def _apply(
        self,
        doctor_id: str,
        plan: domain.ReleasePlan,
        holds: dict[str, HeldEntry],
        prefs: dict[str, Any],
        day: str,
        now: datetime,
    ) -> None:
        change = AlertChange()
        for h in (*plan.deliver, *plan.digest):
            change.once("1", "rel", h.hold_id)
        notes: list[Notification] = []
        digested = [holds[h.hold_id] for h in plan.digest]
        # A question a moderator hid is no line of a digest (which is about several
        # questions and stays): it goes out alone, born hidden, and comes back on restore.
        hidden = await self.inbox.hidden_questions({e.data["question_id"] for e in digested})
        alone = [holds[h.hold_id] for h in plan.deliver]
        alone += [e for e in digested if e.data["question_id"] in hidden]
        listed = [e for e in digested if e.data["question_id"] not in hidden]
        for entry in alone:
            data = entry.data
            item = fresh_item(
                "question-match",
                now,
                question_id=data["question_id"],
                title=data["title"],
                reason={**data["match"], "held": data["reason"], "held_at": data["held_at"]},
                reason_text=data["reason_text"],
            )
            # The released alert carries the correlation id of the question that caused it.
            note = self.inbox.notification(doctor_id, item, prefs, data.get("correlation_id"))
            change.notify(note).unhold(doctor_id, entry.member)
            notes.append(note)
        if listed:
            note = self.inbox.notification(doctor_id, _digest([e.data for e in listed], now), prefs)
            change.notify(note)
            for entry in listed:
                change.unhold(doctor_id, entry.member)
            notes.append(note)
        for h, decision in plan.rehold:
            entry = holds[h.hold_id]
            assert decision.hold_until is not None and decision.reason is not None
            new = {**entry.data, "reason": decision.reason.value}
            change.rehold(doctor_id, entry.member, now_ms(decision.hold_until), new)
        if notes:
            change.count_sent(doctor_id, day, len(notes))
        if not await self.store.commit(change):
            log.info("held_release_raced", doctor_id=doctor_id)
            return
        for note in notes:
            self.inbox.delivered(note)
        log.info(
            "held_alerts_released",
            doctor_id=doctor_id,
            delivered=len(plan.deliver),
            digested=len(plan.digest),
            reheld=len(plan.rehold),
        )

    async def run_releaser(self) -> None:
        """Background loop: release held alerts as they come due."""
        while True:
            try:
                await self.release_due()
            except (RedisError, OSError) as exc:
                log.warning("held_release_failed", error=str(exc)[:200])
            await asyncio.sleep(self.settings.held_release_interval_s)


def _digest(listed: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """One inbox item listing the question alerts held over the daily cap."""
    n = len(listed)
    title, reason_text = digest_texts(n)
    return fresh_item(
        "digest",
        now,
        title=title,
        reason={
            "held": "daily_cap",
            "count": n,
            "question_ids": [d["question_id"] for d in listed],
        },
        reason_text=reason_text,
        items=[
            {
                "question_id": d["question_id"],
                "title": d["title"],
                "reason": d["match"],
                "reason_text": d["reason_text"],
                "held_at": d["held_at"],
            }
            for d in listed
        ],
    )
