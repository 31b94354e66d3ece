"""Use cases of the questions service, called by the HTTP routes and event handlers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared import geo, taxonomy
from shared.auth import Principal
from shared.errors import ApiError
from shared.events import AnswerPosted, Location, QuestionPosted, VoteCast
from shared.http import (
    fingerprint,
    idempotency_guard,
    rate_limited,
    replay,
)
from shared.logging import current_correlation_id, get_logger
from shared.metrics import EVENTS_PUBLISHED
from shared.settings import Settings
from shared.text import clean_text

from . import domain, triage
from .store import LIST_SCAN_LIMIT, QuestionStore, decode_cursor

if TYPE_CHECKING:
    from .api import QuestionIn

log = get_logger("askdoc.questions")

SERVICE = "questions"


class QuestionsService:
    """Posting and reading questions; keeping the page read model current."""

    def __init__(self, store: QuestionStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def post_question(
        self, user: Principal, payload: QuestionIn, idempotency_key: str | None
    ) -> tuple[int, dict[str, Any]]:
        """Validate, store and announce a question; replay on a repeated Idempotency-Key."""
        # Only a repeatable request needs its fingerprint (saves work on the hot path).
        request_fp = fingerprint(payload.model_dump()) if idempotency_key else ""
        topics = self._slugs("topics", payload.topics, taxonomy.is_topic)
        named = self._slugs("specialties", payload.specialties or [], taxonomy.is_specialty)
        place = None
        if payload.location is not None:
            loc = payload.location
            try:
                # A dict lookup: the gazetteer indexes are built before readiness.
                place = geo.geocode(loc.zip, loc.city, loc.state, loc.lat, loc.lon)
            except geo.UnknownPlace as exc:
                raise ApiError(422, "unknown_place", str(exc)) from None
        title = clean_text(payload.title)
        body = clean_text(payload.body)
        if not title or not body:
            raise ApiError(422, "invalid_request", "title and body must not be blank")
        flags = triage.triage(title, body)
        now = datetime.now(UTC)
        qid = domain.new_question_id(int(now.timestamp() * 1000))
        location = domain.place_dict(place) if place else None
        doc: dict[str, Any] = {
            "id": qid,
            "title": title,
            "body": body,
            "topics": topics,
            "specialties": list(taxonomy.specialties_for(topics, named)),
            "location": location,
            "status": "open",
            "created_at": now.isoformat(),
            "created_ms": int(now.timestamp() * 1000),
            "anonymous": payload.anonymous,
            "asker_id": user.sub,
            "asker_name": user.name,
            "asker_role": user.role,
            "urgent": flags.urgent,
            "red_flags": list(flags.flags),
        }
        event = QuestionPosted(
            correlation_id=current_correlation_id(),
            producer=SERVICE,
            question_id=qid,
            title=title,
            body=body,
            topics=topics,
            specialties=doc["specialties"],
            location=Location(**location) if location else None,
            asker_id=user.sub,
            anonymous=payload.anonymous,
            urgent=flags.urgent,
            red_flags=list(flags.flags),
            occurred_at=now,
        )
        reply = self._public(doc)
        idempotency = idempotency_guard(
            self.store.tag,
            user.sub,
            idempotency_key,
            201,
            reply,
            request_fp,
            self.settings.idempotency_ttl_s,
        )
        result = await self.store.post(doc, event, idempotency, self.settings)
        if result.failed_guard == "rate_limit":
            raise rate_limited(self.settings, result.found or 1)
        if not result.applied:
            return replay(result.found or "{}", request_fp)
        EVENTS_PUBLISHED.labels(SERVICE, event.stream).inc()
        log.info("question_posted", question_id=qid, topics=topics, urgent=flags.urgent)
        return 201, reply

    def _slugs(self, kind: str, values: list[str], known: Any) -> list[str]:
        slugs = [taxonomy.normalize_slug(v) for v in values]
        unknown = [v for v, s in zip(values, slugs, strict=True) if not known(s)]
        if unknown:
            raise ApiError(
                422, f"unknown_{kind}", f"unknown {kind}: {', '.join(unknown)} (see GET /taxonomy)"
            )
        return list(dict.fromkeys(slugs))

    def _public(self, doc: dict[str, Any]) -> dict[str, Any]:
        public = domain.public_question(doc)
        public.pop("created_ms", None)
        if doc.get("urgent"):
            public["emergency_notice"] = triage.EMERGENCY_NOTICE
        return public

    async def page(self, qid: str) -> dict[str, Any] | None:
        """The question page: question, ranked answers with votes, count, disclaimer."""
        doc, answers, tallies = await self.store.page_parts(qid)
        if doc is None:
            return None
        page = self._public(doc)
        ranked = domain.rank_answers(answers, tallies)
        page["answers"] = [
            {**r.answer, "helpful": r.helpful, "unhelpful": r.unhelpful, "score": round(r.score, 4)}
            for r in ranked
        ]
        page["answer_count"] = len(ranked)
        if ranked:
            page["status"] = "answered"
        page["disclaimer"] = domain.DISCLAIMER
        return page

    async def list_questions(
        self, topic: str | None, specialty: str | None, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        """Newest first, filtered by topic and specialty, paged by cursor."""
        after = None
        if cursor:
            try:
                after = decode_cursor(cursor)
            except ValueError:
                raise ApiError(
                    400, "bad_cursor", "cursor is not valid; start without one"
                ) from None
        topic_slug = taxonomy.normalize_slug(topic) if topic else None
        spec_slug = taxonomy.normalize_slug(specialty) if specialty else None
        if topic_slug:
            kind, slug = "topic", topic_slug
        elif spec_slug:
            kind, slug = "specialty", spec_slug
        else:
            kind, slug = "all", ""
        items: list[dict[str, Any]] = []
        scanned = 0
        next_cursor: str | None = None
        while len(items) < limit and scanned < LIST_SCAN_LIMIT:
            ids, next_cursor = await self.store.list_ids(kind, slug, after, limit)
            scanned += len(ids)
            for doc in await self.store.get_many(ids):
                # With both filters the topic index drives and specialty filters.
                if topic_slug and spec_slug and spec_slug not in doc["specialties"]:
                    continue
                if len(items) < limit:
                    items.append(self._public(doc))
            if next_cursor is None:
                break
            after = decode_cursor(next_cursor)
        return {"items": items, "next_cursor": next_cursor if len(items) >= limit else None}

    async def related(self, qid: str, limit: int) -> list[dict[str, Any]] | None:
        """Questions most related to `qid` by topic overlap and title words."""
        doc = await self.store.get(qid)
        if doc is None:
            return None
        candidates: dict[str, None] = {}
        for topic in doc["topics"]:
            for other_id in await self.store.recent_ids("topic", topic, 200):
                if other_id != qid:
                    candidates[other_id] = None
        my_words = domain.words(doc["title"])
        scored = []
        for other in await self.store.get_many(list(candidates)):
            score = domain.relatedness(
                set(doc["topics"]), my_words, set(other["topics"]), domain.words(other["title"])
            )
            scored.append((score, other["created_at"], other))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [
            {"id": o["id"], "title": o["title"], "topics": o["topics"], "score": round(score, 3)}
            for score, _, o in scored[:limit]
        ]

    async def on_answer_posted(self, event: AnswerPosted) -> None:
        """Put the answer on its question's page."""
        await self.store.add_answer(event)
        log.info("page_answer_added", question_id=event.question_id, answer_id=event.answer_id)

    async def on_vote_cast(self, event: VoteCast) -> None:
        """Keep the page's tally of the answer (newest tally wins)."""
        await self.store.set_tally(event)
