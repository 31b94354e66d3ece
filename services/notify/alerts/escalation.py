"""No question left alone: an unanswered question alerts the next ring of doctors.

Driven by events (question-posted starts the clock, answer-posted stops it) and a
due-time index read from its due end, never by a scan of all questions. Each round's
doctors are frozen before they are alerted, so a round that is cut short (a crash, a
restart) is finished with the same doctors, and the alert guard (one question-match per
doctor per question) keeps anyone from hearing of a question twice.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import UTC, datetime

from redis.exceptions import RedisError

from shared.events import AnswerPosted, ModerationDecided, QuestionPosted
from shared.logging import get_logger

from ..matching.domain import waited_text
from ..matching.service import Matcher
from ..settings import NotifySettings
from .escalation_store import EscalationStore
from .service import AlertService, now_ms

log = get_logger("askdoc.notify")

LOCK_TTL_S = 60
DUE_BATCH = 50


class Escalations:
    """Schedules, runs and stops the escalation rounds of unanswered questions."""

    def __init__(
        self,
        store: EscalationStore,
        matcher: Matcher,
        alerts: AlertService,
        settings: NotifySettings,
    ) -> None:
        self.store = store
        self.matcher = matcher
        self.alerts = alerts
        self.settings = settings

    @property
    def _after_ms(self) -> int:
        return int(self.settings.escalate_after_s * 1000)

    async def on_question_posted(self, event: QuestionPosted) -> None:
        """Start the question's clock (idempotent)."""
        if self.settings.escalate_rounds == 0:
            return
        # The body is not needed to alert; keep no more of the question than that.
        kept = event.model_copy(update={"body": ""}).model_dump_json()
        due = now_ms(event.occurred_at) + self._after_ms
        await self.store.schedule(event.question_id, kept, due)

    def watch(self, event: QuestionPosted) -> tuple[str, int, int] | None:
        """What starting the question's clock writes (for the alerts' batch script):
        the question as kept, when its first round is due, the state's TTL; None when off."""
        if self.settings.escalate_rounds == 0:
            return None
        kept = event.model_copy(update={"body": ""}).model_dump_json()
        return kept, now_ms(event.occurred_at) + self._after_ms, self.store.ttl_s

    async def on_answer_posted(self, event: AnswerPosted) -> None:
        """An answer stops the question's escalation."""
        await self.store.stop(event.question_id)

    async def on_moderation_decided(self, event: ModerationDecided) -> None:
        """A question moderators hid alerts no more doctors (a restore does not restart it)."""
        if event.item_kind == "question" and event.decision == "hidden":
            await self.store.stop(event.question_id)

    async def escalate_due(self, now: datetime | None = None) -> int:
        """Run the round of every question that is due; how many were looked at."""
        now = now or datetime.now(UTC)
        due = await self.store.due(now_ms(now), DUE_BATCH)
        for question_id in due:
            if await self.store.lock(question_id, LOCK_TTL_S):
                try:
                    await self._escalate(question_id, now)
                finally:
                    await self.store.unlock(question_id)
        return len(due)

    async def _escalate(self, question_id: str, now: datetime) -> None:
        state = await self.store.state(question_id)
        number = (state.round if state else 0) + 1
        if state is None or state.answered or number > self.settings.escalate_rounds:
            await self.store.drop(question_id)
            return
        event = QuestionPosted.model_validate_json(state.question)
        waited = waited_text(number * self.settings.escalate_after_s)
        earlier = await self.store.rounds(question_id, number)
        frozen = next((raw for raw in earlier if json.loads(raw)["round"] == number), None)
        if frozen is None:
            alerted = await self.matcher.first_alerted(question_id)
            for raw in earlier:
                alerted.update(m["doctor_id"] for m in json.loads(raw)["matches"])
            found, _ = await self.matcher.next_ring(event, alerted, number, waited)
            encoded = json.dumps({"round": number, "matches": [asdict(m) for m in found]})
            frozen = await self.store.freeze_round(question_id, number, encoded)
        matches, rows = await self.matcher.decoded(json.dumps(json.loads(frozen)["matches"]))
        outcomes = await self.alerts.alert_matches(event, matches, rows)
        more = bool(matches) and number < self.settings.escalate_rounds
        await self.store.advance(
            question_id, number, now_ms(now) + self._after_ms if more else None
        )
        log.info(
            "question_escalated",
            question_id=question_id,
            round=number,
            doctors=len(matches),
            delivered=outcomes.count("delivered"),
            held=outcomes.count("held"),
            duplicates=outcomes.count("duplicate"),
            last=not more,
        )

    async def run_escalator(self) -> None:
        """Background loop: run escalation rounds as they come due."""
        while True:
            try:
                await self.escalate_due()
            except (RedisError, OSError) as exc:
                log.warning("escalation_failed", error=str(exc)[:200])
            await asyncio.sleep(self.settings.escalate_interval_s)
