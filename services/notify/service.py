"""Use cases of the notify service: the directory, matching, alerts, held alerts, inboxes."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from shared import geo, taxonomy
from shared.atomic import CommitResult, Txn
from shared.auth import Principal
from shared.errors import ApiError
from shared.events import (
    AnswerPosted,
    DoctorProfileChanged,
    Location,
    NotificationKind,
    NotificationSent,
    QuestionPosted,
    VoteCast,
)
from shared.logging import current_correlation_id, get_logger
from shared.metrics import EVENTS_PUBLISHED

from . import domain
from .metrics import ALERTS, MATCH_SECONDS
from .settings import NotifySettings
from .store import DirectoryStore, DoctorRow, InboxStore

if TYPE_CHECKING:
    from .api import DoctorIn

log = get_logger("askdoc.notify")

SERVICE = "notify"
QUESTION_PROJECTION_TTL_S = 365 * 86400
RELEASE_LOCK_TTL_S = 30
DELIVERY_FINAL = frozenset({"delivered", "failed", "refused", "skipped"})


class QuestionNotSeenYet(Exception):
    """An answer arrived before its question; the entry is retried until it has."""


def _now() -> datetime:
    return datetime.now(UTC)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _quiet_hours(prefs: dict[str, Any]) -> domain.QuietHours | None:
    qh = prefs.get("quiet_hours")
    if not qh:
        return None
    return domain.parse_quiet_hours(qh["start"], qh["end"], qh["tz"])


def _local_zone(prefs: dict[str, Any]) -> str | None:
    qh = prefs.get("quiet_hours")
    return str(qh["tz"]) if qh else None


class NotifyService:
    """The directory, matching questions to doctors, and everyone's alerts."""

    def __init__(
        self, directory: DirectoryStore, inbox: InboxStore, settings: NotifySettings
    ) -> None:
        self.directory = directory
        self.inbox = inbox
        self.settings = settings
        self.policy = domain.MatchPolicy(cap=settings.match_cap, min_matches=settings.match_min)
        self._to_trim: set[str] = set()
        # The consumer runs a whole batch of handlers at once and a question fans out
        # into many commits; both are bounded so the Redis connection pool never runs dry.
        self._handlers = asyncio.Semaphore(settings.redis_concurrency)
        self._commits = asyncio.Semaphore(settings.redis_concurrency)

    # --- directory -----------------------------------------------------------------------

    async def put_doctor(
        self, user: Principal, doctor_id: str, payload: DoctorIn
    ) -> dict[str, Any]:
        """Create or replace a doctor's profile; index it and announce it in one step."""
        if user.role != "admin" and user.sub != doctor_id:
            raise ApiError(403, "forbidden", "a doctor may only edit their own profile")
        specialties = self._specialties(payload.specialties)
        place = await self._geocode(payload)
        quiet_hours = None
        if payload.quiet_hours is not None:
            qh = payload.quiet_hours
            try:
                domain.parse_quiet_hours(qh.start, qh.end, qh.tz)
            except ValueError as exc:
                raise ApiError(422, "invalid_quiet_hours", str(exc)) from None
            quiet_hours = {"start": qh.start, "end": qh.end, "tz": qh.tz}
        webhook_url = payload.webhook_url
        if webhook_url is not None:
            problem = domain.webhook_url_problem(webhook_url)
            if problem is not None:
                raise ApiError(422, "invalid_webhook_url", problem)

        for _ in range(5):
            stored = await self.directory.get(doctor_id)
            old, version = stored if stored else ({}, 0)
            # The secret is never shown, so a client that GETs and PUTs its profile back
            # cannot resend it: leaving the field out keeps the stored one.
            if "webhook_secret" in payload.model_fields_set:
                secret = payload.webhook_secret
            else:
                secret = old.get("webhook_secret")
            if webhook_url is not None and not secret:
                raise ApiError(
                    422,
                    "webhook_secret_required",
                    "a webhook_url needs a webhook_secret (>= 16 characters) to sign deliveries",
                )
            now = _now()
            profile: dict[str, Any] = {
                "id": doctor_id,
                "name": payload.name,
                "credentials": payload.credentials,
                "specialties": specialties,
                "location": {
                    "city": place.city,
                    "state": place.state,
                    "zip": place.zip,
                    "lat": place.lat,
                    "lon": place.lon,
                },
                "radius_km": payload.radius_km,
                "rating": payload.rating,
                "review_count": payload.review_count or 0,
                "email": payload.email,
                "webhook_url": webhook_url,
                "webhook_secret": secret if webhook_url is not None else None,
                "quiet_hours": quiet_hours,
                "daily_cap": payload.daily_cap,
                "profile_version": version + 1,
                "updated_at": now.isoformat(),
            }
            channels = [c for c, on in (("webhook", webhook_url), ("email", payload.email)) if on]
            prefs = {
                "quiet_hours": quiet_hours,
                "daily_cap": payload.daily_cap,
                "channels": channels,
            }
            event = DoctorProfileChanged(
                correlation_id=current_correlation_id(),
                producer=SERVICE,
                doctor_id=doctor_id,
                name=payload.name,
                credentials=payload.credentials,
                specialties=specialties,
                location=Location(**profile["location"]),
                radius_km=payload.radius_km,
                rating=payload.rating,
                review_count=payload.review_count or 0,
                profile_version=version + 1,
                occurred_at=now,
            )
            slugs = [s.slug for s in taxonomy.specialties()]
            result = await self.directory.save(
                profile, old.get("specialties", []), slugs, prefs, event
            )
            if result.applied:
                break
        else:
            raise ApiError(409, "conflict", "the profile changed concurrently; try again")
        EVENTS_PUBLISHED.labels(SERVICE, event.stream).inc()
        # Held alerts are re-planned against the new quiet hours and cap at once.
        await self.inbox.nudge(doctor_id, _ms(now))
        log.info(
            "doctor_profile_saved",
            doctor_id=doctor_id,
            profile_version=version + 1,
            specialties=specialties,
        )
        return self.profile_view(profile, private=True)

    async def get_doctor(self, doctor_id: str, viewer: Principal | None) -> dict[str, Any] | None:
        """A doctor's card; private fields only for the doctor themself or an admin."""
        stored = await self.directory.get(doctor_id)
        if stored is None:
            return None
        private = viewer is not None and (viewer.role == "admin" or viewer.sub == doctor_id)
        return self.profile_view(stored[0], private=private)

    @staticmethod
    def profile_view(profile: dict[str, Any], private: bool) -> dict[str, Any]:
        """The profile as shown: the public card, plus alert settings for its owner."""
        loc = profile["location"]
        view: dict[str, Any] = {
            "id": profile["id"],
            "name": profile["name"],
            "credentials": profile["credentials"],
            "specialties": profile["specialties"],
            "specialty": profile["specialties"][0] if profile["specialties"] else None,
            "city": loc.get("city"),
            "state": loc.get("state"),
            "location": loc,
            "radius_km": profile["radius_km"],
            "rating": profile.get("rating"),
            "review_count": profile.get("review_count") or 0,
            "profile_version": profile["profile_version"],
            "updated_at": profile["updated_at"],
        }
        if private:
            view.update(
                email=profile.get("email"),
                webhook_url=profile.get("webhook_url"),
                has_webhook_secret=bool(profile.get("webhook_secret")),
                quiet_hours=profile.get("quiet_hours"),
                daily_cap=profile.get("daily_cap"),
            )
        return view

    def _specialties(self, values: list[str]) -> list[str]:
        slugs = [taxonomy.normalize_slug(v) for v in values]
        unknown = [v for v, s in zip(values, slugs, strict=True) if not taxonomy.is_specialty(s)]
        if unknown:
            raise ApiError(
                422,
                "unknown_specialties",
                f"unknown specialties: {', '.join(unknown)} (see GET /taxonomy)",
            )
        return list(dict.fromkeys(slugs))

    async def _geocode(self, payload: DoctorIn) -> geo.Place:
        loc = payload.location
        try:
            # Cold gazetteer indexes take a second to build; keep the loop free.
            return await asyncio.to_thread(
                geo.geocode, loc.zip, loc.city, loc.state, loc.lat, loc.lon
            )
        except geo.UnknownPlace as exc:
            raise ApiError(422, "unknown_place", str(exc)) from None

    # --- matching a question ---------------------------------------------------------------

    async def on_question_posted(self, event: QuestionPosted) -> None:
        """Alert the matching doctors: at most once each, within caps and quiet hours."""
        async with self._handlers:
            await self._on_question_posted(event)

    async def _on_question_posted(self, event: QuestionPosted) -> None:
        started = asyncio.get_running_loop().time()
        qid = event.question_id
        stored = await self.inbox.remember_question(
            qid, event.asker_id, event.title, QUESTION_PROJECTION_TTL_S
        )
        if stored is not None:
            # A redelivery: alert exactly the doctors chosen the first time.
            matches = _decode_matches(stored)
            rows = await self.directory.rows([m.doctor_id for m in matches])
        else:
            matches, rows = await self._match(event)
            encoded = json.dumps([asdict(m) for m in matches])
            frozen = await self.inbox.freeze_matches(qid, encoded, self.settings.dedupe_ttl_s)
            if frozen != encoded:
                matches = _decode_matches(frozen)
                rows = await self.directory.rows([m.doctor_id for m in matches])
        now = _now()
        chosen = [(m, rows[m.doctor_id]) for m in matches if m.doctor_id in rows]
        days = [domain.day_key(row.tz, now) for _, row in chosen]
        # Preferences and today's counts only for the chosen few, both at once.
        prefs, counts = await asyncio.gather(
            self.directory.prefs_many([m.doctor_id for m, _ in chosen]),
            self.inbox.sent_counts(
                [
                    self.inbox.sent_key(m.doctor_id, day)
                    for (m, _), day in zip(chosen, days, strict=True)
                ]
            ),
        )
        planned = [
            self._plan_alert(event, m, p, day, sent, now)
            for (m, _), p, day, sent in zip(chosen, prefs, days, counts, strict=True)
        ]
        # All of a question's alerts in one round trip; each commits or not on its own.
        async with self._commits:
            results = await self.inbox.committer.commit_many([txn for txn, _ in planned])
        outcomes = [
            after(result.applied) for (_, after), result in zip(planned, results, strict=True)
        ]
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

    async def _match(
        self, event: QuestionPosted
    ) -> tuple[list[domain.Match], dict[str, DoctorRow]]:
        """Candidates from the specialty indexes (never a scan of all doctors), then the rules."""
        specialties = list(dict.fromkeys(event.specialties))
        count = self.settings.geo_search_count
        if event.location is None:
            # No place to measure from: the best rated doctors of the specialties.
            found = await self.directory.best_rated(specialties, count)
            rated = await self.directory.rows(list(found))
            candidates = [
                domain.Candidate(d, tuple(found[d]), 0.0, 0.0, row.rating, row.review_count)
                for d, row in rated.items()
                if d != event.asker_id
            ]
            return domain.match_by_rating(specialties, candidates, self.policy), rated
        lat, lon = event.location.lat, event.location.lon
        # Search outwards in rings, so the cost follows how many doctors are near, not how
        # many there are: dense cities stop at the first ring, sparse areas widen. Rings
        # are whole distance bands, so a doctor beyond the ring can never outrank one
        # inside it; a ring whose nearest `count` were all taken is searched deeper.
        radius = self.settings.first_search_km
        limit = self.settings.max_radius_km
        rows: dict[str, DoctorRow] = {}
        while True:
            at_limit = radius >= limit
            # Redis measures on a slightly larger sphere than shared.geo; the margin keeps
            # a doctor right at the edge from being lost before the rules measure them.
            found, truncated = await self.directory.near(
                specialties, lat, lon, radius * 1.01, count
            )
            # Each ring fetches only the doctors the inner rings did not.
            rows.update(await self.directory.rows([d for d in found if d not in rows]))
            candidates = [
                domain.Candidate(
                    doctor_id=d,
                    specialties=tuple(found[d]),
                    distance_km=distance,
                    radius_km=row.radius_km,
                    rating=row.rating,
                    review_count=row.review_count,
                )
                for d in found
                if (row := rows.get(d)) is not None
                # a doctor asking is not alerted to their own question
                and d != event.asker_id
                and (
                    (distance := geo.haversine_km(lat, lon, row.lat, row.lon)) <= radius or at_limit
                )
            ]
            matches = domain.match_doctors(specialties, candidates, self.policy)
            complete = len(matches) >= self.policy.cap and not any(m.widened for m in matches)
            deeper = truncated and count < self.settings.geo_search_max
            if complete or (at_limit and not deeper):
                return matches, rows
            if deeper:
                count = min(count * 4, self.settings.geo_search_max)
            else:
                radius = min(radius * 3, limit)

    def _plan_alert(
        self,
        event: QuestionPosted,
        match: domain.Match,
        prefs: dict[str, Any],
        day: str,
        sent_today: int,
        now: datetime,
    ) -> tuple[Txn, Callable[[bool], str]]:
        """One doctor's alert as a Txn (deliver or hold), and what to do once committed."""
        decision = domain.plan_delivery(
            urgent=event.urgent,
            quiet_hours=_quiet_hours(prefs),
            daily_cap=prefs.get("daily_cap"),
            sent_today=sent_today,
            now_utc=now,
        )
        guard = self.inbox.alert_guard_key("qm", event.question_id, match.doctor_id)
        ttl = self.settings.dedupe_ttl_s
        if decision.deliver_now:
            nid = domain.new_notification_id(_ms(now))
            item = self._item(
                nid,
                "question-match",
                now,
                question_id=event.question_id,
                title=event.title,
                reason=match.reason(),
                reason_text=match.reason_text(),
                urgent=event.urgent,
                red_flags=list(event.red_flags),
            )
            txn = Txn().absent("alert", guard, nid, ttl)
            self._notify(txn, match.doctor_id, item, prefs)
            self.inbox.count_sent(txn, match.doctor_id, day)

            def delivered(applied: bool) -> str:
                if not applied:
                    return "duplicate"
                self._delivered(match.doctor_id, item)
                return "delivered"

            return txn, delivered
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
        release_ms = _ms(decision.hold_until)
        txn = Txn().absent("alert", guard, f"held:{hold_id}", ttl)
        txn.call("ZADD", self.inbox.held_key(match.doctor_id), release_ms, json.dumps(hold))
        txn.call("ZADD", self.inbox.due_key, "LT", release_ms, match.doctor_id)
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

        return txn, held

    # --- other alerts ------------------------------------------------------------------------

    async def on_answer_posted(self, event: AnswerPosted) -> None:
        """Tell the asker a doctor answered (once per answer)."""
        async with self._handlers:
            await self._on_answer_posted(event)

    async def _on_answer_posted(self, event: AnswerPosted) -> None:
        question = await self.inbox.question(event.question_id)
        if not question:
            raise QuestionNotSeenYet(f"question {event.question_id} not projected yet")
        asker = question["asker_id"]
        if asker == event.doctor.id:
            return
        now = _now()
        nid = domain.new_notification_id(_ms(now))
        doctor = event.doctor
        who = f"{doctor.name}, {doctor.credentials}" if doctor.credentials else doctor.name
        item = self._item(
            nid,
            "new-answer",
            now,
            question_id=event.question_id,
            answer_id=event.answer_id,
            title=question.get("title"),
            reason={
                "doctor_id": doctor.id,
                "doctor_name": doctor.name,
                "specialty": doctor.specialty,
            },
            reason_text=f"{who} answered your question",
        )
        guard = self.inbox.alert_guard_key("na", event.answer_id)
        txn = Txn().absent("alert", guard, nid, self.settings.dedupe_ttl_s)
        self._notify(txn, asker, item, await self.directory.prefs(asker))
        if (await self._commit(txn)).applied:
            self._delivered(asker, item)

    async def on_vote_cast(self, event: VoteCast) -> None:
        """Tell a doctor their answer crossed a helpful-vote milestone (never once per vote)."""
        async with self._handlers:
            await self._on_vote_cast(event)

    async def _on_vote_cast(self, event: VoteCast) -> None:
        version, notified = await self.inbox.vote_state(event.answer_id)
        if event.tally_version <= version:
            log.info("vote_tally_stale", answer_id=event.answer_id, version=event.tally_version)
            return
        key = self.inbox.votes_key(event.answer_id)
        milestone = domain.vote_milestone_crossed(notified, event.helpful)
        seen = Txn().set_if_newer(key, "version", event.tally_version, {"helpful": event.helpful})
        if milestone is None:
            await self._commit(seen)
            return
        now = _now()
        nid = domain.new_notification_id(_ms(now))
        question = await self.inbox.question(event.question_id)
        votes = "vote" if milestone == 1 else "votes"
        item = self._item(
            nid,
            "answer-voted",
            now,
            question_id=event.question_id,
            answer_id=event.answer_id,
            title=question.get("title"),
            reason={"milestone": milestone, "helpful": event.helpful},
            reason_text=f"your answer reached {milestone} helpful {votes}",
        )
        guard = self.inbox.alert_guard_key("av", event.answer_id, str(milestone))
        txn = Txn().absent("alert", guard, nid, self.settings.dedupe_ttl_s)
        txn.set_if_newer(
            key,
            "version",
            event.tally_version,
            {"helpful": event.helpful, "notified": event.helpful},
        )
        self._notify(txn, event.doctor_id, item, await self.directory.prefs(event.doctor_id))
        if (await self._commit(txn)).applied:
            self._delivered(event.doctor_id, item)
        else:
            # This milestone was alerted by a concurrent vote; still record the tally.
            await self._commit(seen)

    # --- shared by every alert -----------------------------------------------------------------

    @staticmethod
    def _item(nid: str, kind: NotificationKind, now: datetime, **fields: Any) -> dict[str, Any]:
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

    async def _commit(self, txn: Txn) -> CommitResult:
        async with self._commits:
            return await self.inbox.commit(txn)

    def _external(self, prefs: dict[str, Any]) -> list[str]:
        channels = [c for c in prefs.get("channels", []) if c in ("webhook", "email")]
        if self.settings.smtp_host is None and "email" in channels:
            channels.remove("email")
        return channels

    def _notify(
        self,
        txn: Txn,
        recipient: str,
        item: dict[str, Any],
        prefs: dict[str, Any],
        correlation_id: str | None = None,
    ) -> None:
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
        self.inbox.add_notification(txn, recipient, item, external, event)

    def _delivered(self, recipient: str, item: dict[str, Any]) -> None:
        EVENTS_PUBLISHED.labels(SERVICE, NotificationSent.stream).inc()
        ALERTS.labels(item["kind"], "delivered").inc()
        self._to_trim.add(recipient)
        log.info(
            "notification_sent",
            notification_id=item["id"],
            recipient_id=recipient,
            kind=item["kind"],
            question_id=item.get("question_id"),
            urgent=item.get("urgent", False),
        )

    # --- held alerts ---------------------------------------------------------------------------

    async def release_due(self, now: datetime | None = None) -> int:
        """Release or re-plan the held alerts of every doctor who has one due; how many."""
        now = now or _now()
        doctors = await self.inbox.due_doctors(_ms(now), 100)
        for doctor_id in doctors:
            await self._release(doctor_id, now)
        return len(doctors)

    async def _release(self, doctor_id: str, now: datetime) -> None:
        if not await self.inbox.lock_release(doctor_id, RELEASE_LOCK_TTL_S):
            return
        try:
            pairs = await self.inbox.held(doctor_id)
            holds: dict[str, tuple[str, dict[str, Any]]] = {}
            held: list[domain.HeldAlert] = []
            for member, score in pairs:
                data = json.loads(member)
                holds[data["hold_id"]] = (member, data)
                held.append(
                    domain.HeldAlert(
                        data["hold_id"],
                        datetime.fromtimestamp(score / 1000, UTC),
                        domain.HoldReason(data["reason"]),
                    )
                )
            prefs = await self.directory.prefs(doctor_id)
            day = domain.day_key(_local_zone(prefs), now)
            [sent] = await self.inbox.sent_counts([self.inbox.sent_key(doctor_id, day)])
            plan = domain.plan_release(
                held,
                quiet_hours=_quiet_hours(prefs),
                daily_cap=prefs.get("daily_cap"),
                sent_today=sent,
                now_utc=now,
            )
            if not plan.empty:
                await self._apply_release(doctor_id, plan, holds, prefs, day, now)
        finally:
            await self.inbox.refresh_due(doctor_id)
            await self.inbox.unlock_release(doctor_id)

    async def _apply_release(
        self,
        doctor_id: str,
        plan: domain.ReleasePlan,
        holds: dict[str, tuple[str, dict[str, Any]]],
        prefs: dict[str, Any],
        day: str,
        now: datetime,
    ) -> None:
        held_key = self.inbox.held_key(doctor_id)
        ttl = self.settings.dedupe_ttl_s
        txn = Txn()
        for h in (*plan.deliver, *plan.digest):
            txn.absent("release", self.inbox.alert_guard_key("rel", h.hold_id), ttl_s=ttl)
        items: list[dict[str, Any]] = []
        for h in plan.deliver:
            member, data = holds[h.hold_id]
            item = self._item(
                domain.new_notification_id(_ms(now)),
                "question-match",
                now,
                question_id=data["question_id"],
                title=data["title"],
                reason={**data["match"], "held": data["reason"], "held_at": data["held_at"]},
                reason_text=data["reason_text"],
            )
            # The released alert carries the correlation id of the question that caused it.
            self._notify(txn, doctor_id, item, prefs, data.get("correlation_id"))
            txn.call("ZREM", held_key, member)
            items.append(item)
        if plan.digest:
            listed = [holds[h.hold_id][1] for h in plan.digest]
            n = len(listed)
            plural = "s" if n != 1 else ""
            item = self._item(
                domain.new_notification_id(_ms(now)),
                "digest",
                now,
                title=f"{n} question{plural} held over your daily cap",
                reason={
                    "held": "daily_cap",
                    "count": n,
                    "question_ids": [d["question_id"] for d in listed],
                },
                reason_text=f"digest of {n} question alert{plural} held over your daily cap",
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
            self._notify(txn, doctor_id, item, prefs)
            for h in plan.digest:
                txn.call("ZREM", held_key, holds[h.hold_id][0])
            items.append(item)
        for h, decision in plan.rehold:
            member, data = holds[h.hold_id]
            assert decision.hold_until is not None and decision.reason is not None
            txn.call("ZREM", held_key, member)
            new_member = json.dumps({**data, "reason": decision.reason.value})
            txn.call("ZADD", held_key, _ms(decision.hold_until), new_member)
        if items:
            self.inbox.count_sent(txn, doctor_id, day, len(items))
        if not (await self._commit(txn)).applied:
            log.info("held_release_raced", doctor_id=doctor_id)
            return
        for item in items:
            self._delivered(doctor_id, item)
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

    # --- inboxes -------------------------------------------------------------------------------

    async def inbox_page(
        self, user: Principal, limit: int, cursor: str | None, unread: bool
    ) -> dict[str, Any]:
        """The signed-in user's notifications, newest first, with a cursor."""
        if cursor is not None and not domain.is_notification_id(cursor):
            raise ApiError(400, "bad_cursor", "cursor is not valid; start without one")
        ids = await self.inbox.page(user.sub, unread, cursor, limit + 1)
        more = len(ids) > limit
        ids = ids[:limit]
        items = [item for item in await self.items(ids) if item is not None]
        return {
            "items": items,
            "next_cursor": ids[-1] if more and ids else None,
            "unread_count": await self.inbox.unread_count(user.sub),
        }

    async def items(self, nids: list[str]) -> list[dict[str, Any] | None]:
        """Inbox items as shown (None for an expired one), with read flag and delivery."""
        return [_view(note) for note in await self.inbox.notes(nids)]

    async def items_after(self, recipient: str, after: str) -> list[dict[str, Any]]:
        """The recipient's items newer than `after`, oldest first (SSE resume)."""
        if not domain.is_notification_id(after):
            return []
        ids = await self.inbox.newer(recipient, after, self.settings.inbox_max_items)
        return [item for item in await self.items(ids) if item is not None]

    async def mark_read(self, user: Principal, nid: str) -> dict[str, Any]:
        """Mark one of the user's notifications read; 404 for anyone else's."""
        missing = ApiError(404, "not_found", f"no notification {nid!r} in your inbox")
        if not domain.is_notification_id(nid):
            raise missing
        [note] = await self.inbox.notes([nid])
        if not note or note.get("recipient") != user.sub:
            raise missing
        if not (await self.inbox.mark_read(user.sub, nid)).applied:
            raise missing
        item = _view({**note, "read": "1"})
        assert item is not None
        return item

    async def trim_inboxes(self) -> int:
        """Bound the inboxes written since the last call; how many items went."""
        recipients, self._to_trim = self._to_trim, set()
        floor_ms = _ms(_now()) - self.settings.inbox_ttl_days * 86400 * 1000
        floor = domain.notification_id_floor(max(floor_ms, 0))
        dropped = 0
        for recipient in recipients:
            dropped += await self.inbox.trim(recipient, self.settings.inbox_max_items, floor)
        return dropped

    async def run_trimmer(self) -> None:
        """Background loop: keep inboxes within their bounds."""
        while True:
            try:
                await self.trim_inboxes()
            except (RedisError, OSError) as exc:
                log.warning("inbox_trim_failed", error=str(exc)[:200])
            await asyncio.sleep(1.0)


def _decode_matches(raw: str) -> list[domain.Match]:
    return [domain.Match(**m) for m in json.loads(raw)]


def _view(note: dict[str, str]) -> dict[str, Any] | None:
    """A stored notification hash as the inbox shows it."""
    if not note or "item" not in note:
        return None
    item: dict[str, Any] = json.loads(note["item"])
    item["read"] = note.get("read") == "1"
    item["delivery"] = {k[2:]: v for k, v in note.items() if k.startswith("d:")}
    return item
