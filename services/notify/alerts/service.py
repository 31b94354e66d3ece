"""Use cases of the alerts: who hears of a question, an answer, a vote, and when."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.events import (
    AnswerAccepted,
    AnswerPosted,
    ModerationDecided,
    QuestionFollowed,
    QuestionPosted,
    QuestionUnfollowed,
    VoteCast,
)
from shared.logging import bind_correlation_id, get_logger

from ..directory.domain import DoctorRow
from ..inbox.domain import fresh_item
from ..inbox.service import InboxService
from ..matching.domain import Match
from ..matching.service import Matcher
from ..metrics import ALERTS, MATCH_SECONDS
from ..settings import NotifySettings
from . import domain
from .ports import AlertPort, AlertPrefs
from .store import AlertChange

log = get_logger("askdoc.notify")

#: How a moderation reason category reads in the author's alert.
MODERATION_REASONS = {
    "spam": "spam",
    "unsafe-medical-advice": "unsafe medical advice",
    "harassment": "harassment",
    "other": "against the community rules",
}

QUESTION_PROJECTION_TTL_S = 365 * 86400

# A question's escalation clock: (the question as kept, due time in ms, the state's TTL).
Watch = Callable[[QuestionPosted], tuple[str, int, int] | None]


class QuestionNotSeenYet(Exception):
    """An answer arrived before its question; the entry is retried until it has."""


def now_ms(at: datetime) -> int:
    """Epoch milliseconds of an instant (scores of held alerts, notification ids)."""
    return int(at.timestamp() * 1000)


def quiet_hours(prefs: dict[str, Any]) -> domain.QuietHours | None:
    """A doctor's quiet hours from their stored preferences."""
    qh = prefs.get("quiet_hours")
    if not qh:
        return None
    return domain.parse_quiet_hours(qh["start"], qh["end"], qh["tz"])


class AlertService:
    """Question matches (delivered or held), new-answer and vote-milestone alerts."""

    def __init__(
        self,
        store: AlertPort,
        matcher: Matcher,
        directory: AlertPrefs,
        inbox: InboxService,
        settings: NotifySettings,
    ) -> None:
        self.store = store
        self.matcher = matcher
        self.directory = directory
        self.inbox = inbox
        self.settings = settings
        # The consumer runs a whole batch of handlers at once: bounded so the Redis
        # connection pool never runs dry.
        self._handlers = asyncio.Semaphore(settings.redis_concurrency)
        # Time zones of the doctors met so far: the batch script gets their clocks.
        self._zones: set[str] = {""}

    # --- a question ----------------------------------------------------------------------

    async def on_questions_posted(
        self, events: Sequence[QuestionPosted], watch: Watch
    ) -> list[QuestionPosted]:
        """Alert the matching doctors of a batch of questions; the questions left to
        `on_question_posted` (the full path: urgent ones, held alerts, changed matches).

        Two script calls whatever the batch and the number of doctors: the directory's
        matches every question, the alerts' commits every alert that goes out now (each
        on its own once-guard, as `_plan_alert` would) and starts each escalation clock
        (`watch` gives the question as kept, its due time and the state's TTL).
        """
        # Only the routine questions before the first urgent one: a doctor's day count must
        # grow in the entries' order (an urgent alert counts too), so from there on the
        # questions take the full path, in order, after what this batch defers.
        first_urgent = next((i for i, e in enumerate(events) if e.urgent), len(events))
        routine, after = list(events[:first_urgent]), list(events[first_urgent:])
        if not routine:
            return after
        full: list[QuestionPosted] = []
        started = asyncio.get_running_loop().time()
        now = datetime.now(UTC)
        matched = await self.matcher.match_batch(routine)
        questions = []
        esc_ttl = 0
        for event, (matches_json, doctors_json) in zip(routine, matched, strict=True):
            watched = watch(event)
            kept, due, esc_ttl = watched if watched is not None else ("", 0, esc_ttl)
            question = {
                "id": event.question_id,
                "title": event.title,
                "asker": event.asker_id,
                "corr": event.correlation_id,
                "red_flags": json.dumps(event.red_flags),
                "due_ms": due,
                "kept": kept,
            }
            if event.traceparent:
                # Batches run untraced (tracing takes the per-entry path), so the outbox
                # passes on the question's own context for the delivery's spans to join.
                question["trace"] = event.traceparent
            questions.append((json.dumps(question), matches_json, doctors_json))
        header = {
            "now_ms": now_ms(now),
            "created_at": now.isoformat(),
            "occurred_at": now.isoformat().replace("+00:00", "Z"),
            "nonce": secrets.token_hex(3),
            "uuid_prefix": str(uuid.uuid4())[:-6],
            "zones": {
                zone: {"day": clock.day, "minute": clock.minute}
                for zone, clock in self._zone_clocks(now).items()
            },
            "ttl": {"question": QUESTION_PROJECTION_TTL_S, "esc": esc_ttl},
            "email": self.settings.smtp_host is not None,
            "escalate": self.settings.escalate_rounds > 0,
        }
        outcomes = await self.store.alert_batch(header, questions)
        elapsed = (asyncio.get_running_loop().time() - started) / len(routine)
        for event, outcome in zip(routine, outcomes, strict=True):
            self.learn_zones(outcome.zones)
            self.inbox.delivered_many("question-match", outcome.recipients)
            MATCH_SECONDS.observe(elapsed)
            if outcome.slow or outcome.deferred:
                full.append(event)
                continue
            bind_correlation_id(event.correlation_id, event_type=event.event_type)
            log.info(
                "question_matched",
                question_id=event.question_id,
                delivered=outcome.delivered,
                held=0,
                duplicates=outcome.duplicates,
                urgent=False,
                located=event.location is not None,
            )
        return full + after

    def learn_zones(self, zones: Sequence[str]) -> None:
        """Time zones the batch script gets clocks for from now on (it also learns those
        it meets: an alert in a zone it has no clock for takes the full path once)."""
        self._zones.update(zones)

    def _zone_clocks(self, now: datetime) -> dict[str, domain.ZoneClock]:
        """The clock of every zone met so far ('' is UTC); an unknown zone is dropped."""
        clocks = {}
        for zone in list(self._zones):
            try:
                clocks[zone] = domain.zone_clock(zone or None, now)
            except ValueError:
                self._zones.discard(zone)
        return clocks

    async def on_question_posted(self, event: QuestionPosted) -> None:
        """Alert the matching doctors: at most once each, within caps and quiet hours."""
        async with self._handlers:
            await self._on_question_posted(event)

    async def _on_question_posted(self, event: QuestionPosted) -> None:
        started = asyncio.get_running_loop().time()
        qid = event.question_id
        _, (matches, rows) = await asyncio.gather(
            self.store.remember_question(
                qid, event.asker_id, event.title, QUESTION_PROJECTION_TTL_S
            ),
            self.matcher.matches_for(event),
        )
        outcomes = await self.alert_matches(event, matches, rows)
        MATCH_SECONDS.observe(asyncio.get_running_loop().time() - started)
        log.info(
            "question_matched",
            question_id=qid,
            matches=len(matches),
            delivered=outcomes.count("delivered"),
            held=outcomes.count("held"),
            duplicates=outcomes.count("duplicate"),
            urgent=event.urgent,
            located=event.location is not None,
        )

    async def alert_matches(
        self, event: QuestionPosted, matches: list[Match], rows: dict[str, DoctorRow]
    ) -> list[str]:
        """Alert (or hold for) each matched doctor at most once; each one's outcome."""
        now = datetime.now(UTC)
        chosen = [m for m in matches if m.doctor_id in rows]
        days = [domain.day_key(rows[m.doctor_id].tz, now) for m in chosen]
        urgent, paged = await self._urgency(event, [m.doctor_id for m in chosen], now)
        # Preferences and today's counts only for the chosen few, both at once.
        prefs, counts = await asyncio.gather(
            self.directory.prefs_many([m.doctor_id for m in chosen]),
            self.store.sent_counts(
                [(m.doctor_id, day) for m, day in zip(chosen, days, strict=True)]
            ),
        )
        planned = [
            self._plan_alert(event, m, p, day, sent, now, urgent, urgent_paged)
            for m, p, day, sent, urgent_paged in zip(
                chosen, prefs, days, counts, paged, strict=True
            )
        ]
        # All of a question's alerts in one round trip; each commits or not on its own.
        applied = await self.store.commit_many([change for change, _ in planned])
        outcomes = [after(ok) for (_, after), ok in zip(planned, applied, strict=True)]
        if urgent:
            hour = domain.hour_key(now)
            await asyncio.gather(
                *(
                    self.store.note_urgent_paged(m.doctor_id, hour, event.question_id)
                    for m, outcome in zip(chosen, outcomes, strict=True)
                    if outcome == "delivered"
                )
            )
        return outcomes

    async def _urgency(
        self, event: QuestionPosted, doctor_ids: list[str], now: datetime
    ) -> tuple[bool, list[int]]:
        """Whether the question alerts as urgent, and each doctor's urgent alerts this hour.

        One asker's urgent questions beyond the day's allowance alert as routine: a flood
        of "chest pain" must not page the same doctors all night.
        """
        if not event.urgent:
            return False, [0] * len(doctor_ids)
        day = now.astimezone(UTC).date().isoformat()
        rank = await self.store.urgent_rank(event.asker_id, day, event.question_id)
        if rank > self.settings.urgent_per_asker_per_day:
            ALERTS.labels("question-match", "urgent_downgraded").inc()
            log.info("urgent_downgraded", question_id=event.question_id, urgent_today=rank)
            return False, [0] * len(doctor_ids)
        return True, await self.store.urgent_paged(doctor_ids, domain.hour_key(now))

    def _plan_alert(
        self,
        event: QuestionPosted,
        match: Match,
        prefs: dict[str, Any],
        day: str,
        sent_today: int,
        now: datetime,
        urgent: bool,
        urgent_this_hour: int,
    ) -> tuple[AlertChange, Callable[[bool], str]]:
        """One doctor's alert (deliver or hold), and what to do once committed."""
        decision = domain.plan_delivery(
            urgent=urgent,
            quiet_hours=quiet_hours(prefs),
            daily_cap=prefs.get("daily_cap"),
            sent_today=sent_today,
            now_utc=now,
            urgent_this_hour=urgent_this_hour,
            urgent_hourly_cap=self.settings.urgent_per_doctor_per_quiet_hour,
        )
        guard = ("qm", event.question_id, match.doctor_id)
        if decision.deliver_now:
            item = fresh_item(
                "question-match",
                now,
                question_id=event.question_id,
                title=event.title,
                reason=match.reason(),
                reason_text=match.reason_text(),
                urgent=urgent,
                red_flags=list(event.red_flags),
            )
            note = self.inbox.notification(match.doctor_id, item, prefs)
            change = AlertChange().once(item["id"], *guard).notify(note)
            change.count_sent(match.doctor_id, day)

            def delivered(applied: bool) -> str:
                if not applied:
                    return "duplicate"
                self.inbox.delivered(note)
                return "delivered"

            return change, delivered
        assert decision.hold_until is not None and decision.reason is not None
        hold_id = secrets.token_hex(8)
        hold = {
            "hold_id": hold_id,
            "reason": decision.reason.value,
            "question_id": event.question_id,
            "title": event.title,
            "match": match.reason(),
            "reason_text": match.reason_text(),
            "held_at": now.isoformat(),
            "correlation_id": event.correlation_id,
        }
        change = AlertChange().once(f"held:{hold_id}", *guard)
        change.hold(match.doctor_id, now_ms(decision.hold_until), hold)
        reason = decision.reason.value
        until = decision.hold_until.isoformat()

        def held(applied: bool) -> str:
            if not applied:
                return "duplicate"
            ALERTS.labels("question-match", "held").inc()
            log.info(
                "alert_held",
                question_id=event.question_id,
                doctor_id=match.doctor_id,
                hold_reason=reason,
                release_at=until,
            )
            return "held"

        return change, held

    # --- an answer, a vote -------------------------------------------------------------

    async def on_answer_posted(self, event: AnswerPosted) -> None:
        """Tell the asker a doctor answered (once per answer; the asker follows by default,
        and unfollowing is their opt-out), and the question's other followers."""
        async with self._handlers:
            await self._on_answer_posted(event)

    async def _on_answer_posted(self, event: AnswerPosted) -> None:
        """The asker (unless they unfollowed), then every follower, never the answerer."""
        qid = event.question_id
        question = await self.store.question(qid)
        if not question:
            raise QuestionNotSeenYet(f"question {qid} not projected yet")
        asker = question["asker_id"]
        doctor = event.doctor
        who = f"{doctor.name}, {doctor.credentials}" if doctor.credentials else doctor.name
        now = datetime.now(UTC)
        reason = {"doctor_id": doctor.id, "doctor_name": doctor.name, "specialty": doctor.specialty}
        if asker != doctor.id and await self.store.asker_follows(qid, asker):
            item = fresh_item(
                "new-answer",
                now,
                question_id=qid,
                answer_id=event.answer_id,
                title=question.get("title"),
                reason=reason,
                reason_text=f"{who} answered your question",
            )
            note = self.inbox.notification(asker, item, await self.directory.prefs(asker))
            # The asker's guard is per answer (as before following existed), apart from
            # the followers' per (answer, follower): one alert each, whatever the path.
            if await self.store.notify_once(note, ("na", event.answer_id)):
                self.inbox.delivered(note)
        await self._alert_followers(event, question, {asker, doctor.id}, who, reason, now)

    async def _alert_followers(
        self,
        event: AnswerPosted,
        question: dict[str, str],
        skip: set[str],
        who: str,
        reason: dict[str, Any],
        now: datetime,
    ) -> int:
        """Alert a question's followers of a new answer, a batch per commit; how many.

        Batches of `follow_alert_batch` followers, each one Lua call of guarded alerts, so
        a popular question costs many small calls, never one that stalls Redis. A
        redelivery walks the followers again; each one's guard keeps it to one alert.
        """
        qid = event.question_id
        batch = self.settings.follow_alert_batch
        after: str | None = None
        alerted = 0
        while True:
            page = await self.store.followers(qid, after, batch)
            recipients = [user for user in page if user not in skip]
            if recipients:
                prefs = await self.directory.prefs_many(recipients)
                alerts = []
                for user, user_prefs in zip(recipients, prefs, strict=True):
                    item = fresh_item(
                        "new-answer",
                        now,
                        question_id=qid,
                        answer_id=event.answer_id,
                        title=question.get("title"),
                        reason={**reason, "following": True},
                        reason_text=f"{who} answered a question you follow",
                    )
                    note = self.inbox.notification(user, item, user_prefs)
                    alerts.append((note, ("na", event.answer_id, user)))
                # One script call: the hidden markers looked at, and the :about: indexes
                # written, once for the whole page (add_each_once.lua).
                applied = await self.store.notify_each_once(alerts)
                for (note, _), ok in zip(alerts, applied, strict=True):
                    if ok:
                        self.inbox.delivered(note)
                        alerted += 1
            if len(page) < batch:
                break
            after = page[-1]
        if alerted:
            log.info("followers_alerted", question_id=qid, answer_id=event.answer_id, n=alerted)
        return alerted

    async def on_follow_changed(self, event: QuestionFollowed | QuestionUnfollowed) -> None:
        """Keep the projection of who follows a question (newest follow version wins)."""
        following = isinstance(event, QuestionFollowed)
        applied = await self.store.apply_follow(
            event.question_id,
            event.user_id,
            event.follow_version,
            following,
            QUESTION_PROJECTION_TTL_S,
        )
        log.info(
            "follow_projected",
            question_id=event.question_id,
            following=following,
            version=event.follow_version,
            stale=not applied,
        )

    async def on_answer_accepted(self, event: AnswerAccepted) -> None:
        """Tell a doctor the asker picked their answer (once per question and answer)."""
        async with self._handlers:
            question = await self.store.question(event.question_id)
            item = fresh_item(
                "answer-accepted",
                datetime.now(UTC),
                question_id=event.question_id,
                answer_id=event.answer_id,
                title=question.get("title"),
                reason={"accepted": True},
                reason_text="the asker marked your answer most helpful to them",
            )
            prefs = await self.directory.prefs(event.doctor_id)
            note = self.inbox.notification(event.doctor_id, item, prefs)
            if await self.store.notify_once(note, ("aa", event.question_id, event.answer_id)):
                self.inbox.delivered(note)

    async def on_moderation_decided(self, event: ModerationDecided) -> None:
        """Tell an author a moderator hid or restored their item (never who flagged it)."""
        async with self._handlers:
            question = await self.store.question(event.question_id)
            hidden = event.decision == "hidden"
            what = f"your {event.item_kind}"
            reason = MODERATION_REASONS.get(event.reason, event.reason)
            text = (
                f"a moderator hid {what} ({reason}); readers no longer see it"
                if hidden
                else f"a moderator restored {what}; readers see it again"
            )
            item = fresh_item(
                "item-hidden" if hidden else "item-restored",
                datetime.now(UTC),
                question_id=event.question_id,
                answer_id=event.item_id if event.item_kind == "answer" else None,
                title=question.get("title") if question else None,
                reason={"item_kind": event.item_kind, "category": event.reason},
                reason_text=text,
            )
            prefs = await self.directory.prefs(event.author_id)
            note = self.inbox.notification(event.author_id, item, prefs)
            once = ("mod", event.item_kind, event.item_id, str(event.decision_version))
            if await self.store.commit(AlertChange().once(item["id"], *once).notify(note)):
                self.inbox.delivered(note)

    async def on_vote_cast(self, event: VoteCast) -> None:
        """Tell a doctor their answer crossed a helpful-vote milestone (never once per vote)."""
        async with self._handlers:
            await self._on_vote_cast(event)

    async def _on_vote_cast(self, event: VoteCast) -> None:
        version, notified = await self.store.vote_state(event.answer_id)
        if event.tally_version <= version:
            log.info("vote_tally_stale", answer_id=event.answer_id, version=event.tally_version)
            return
        milestone = domain.vote_milestone_crossed(notified, event.helpful)
        seen = AlertChange().tally(event.answer_id, event.tally_version, {"helpful": event.helpful})
        if milestone is None:
            await self.store.commit(seen)
            return
        now = datetime.now(UTC)
        question = await self.store.question(event.question_id)
        votes = "vote" if milestone == 1 else "votes"
        item = fresh_item(
            "answer-voted",
            now,
            question_id=event.question_id,
            answer_id=event.answer_id,
            title=question.get("title"),
            reason={"milestone": milestone, "helpful": event.helpful},
            reason_text=f"your answer reached {milestone} helpful {votes}",
        )
        prefs = await self.directory.prefs(event.doctor_id)
        note = self.inbox.notification(event.doctor_id, item, prefs)
        change = AlertChange().once(item["id"], "av", event.answer_id, str(milestone))
        change.tally(
            event.answer_id,
            event.tally_version,
            {"helpful": event.helpful, "notified": event.helpful},
        )
        if await self.store.commit(change.notify(note)):
            self.inbox.delivered(note)
        else:
            # This milestone was alerted by a concurrent vote; still record the tally.
            await self.store.commit(seen)
