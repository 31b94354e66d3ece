"""Use cases of the questions service, called by the HTTP routes and event handlers."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from shared import geo, idempotency, ratelimit, taxonomy
from shared.atomic import CommitResult
from shared.errors import Conflict, Forbidden, Invalid, NotFound
from shared.events import (
    AnswerAccepted,
    AnswerEdited,
    AnswerPosted,
    DoctorProfileChanged,
    Location,
    QuestionEdited,
    QuestionFollowed,
    QuestionPosted,
    QuestionUnfollowed,
    VoteCast,
)
from shared.geo import PlaceQuery
from shared.idempotency import IdempotentWrite, ReplyRecord
from shared.logging import current_correlation_id, get_logger
from shared.metrics import events_published
from shared.ratelimit import ReadCount, WriteLimit
from shared.settings import Settings
from shared.text import clean_text

from . import domain, triage
from .store import (
    LIST_BATCH,
    LIST_SCAN_LIMIT,
    RELATED_CANDIDATES,
    CachedPage,
    decode_cursor,
    encode_cursor,
    index_member,
)

log = get_logger("askdoc.questions")

SERVICE = "questions"


@dataclass(frozen=True)
class PostQuestion:
    """A patient (or an admin) asks a question."""

    asker_id: str
    asker_name: str
    asker_role: str
    title: str
    body: str
    topics: tuple[str, ...]
    specialties: tuple[str, ...] | None = None
    location: PlaceQuery | None = None
    anonymous: bool = False
    idempotency_key: str | None = None

    def request(self) -> dict[str, Any]:
        """What the asker asks for, as an Idempotency-Key fingerprints it."""
        location = self.location
        return {
            "title": self.title,
            "body": self.body,
            "topics": list(self.topics),
            "specialties": list(self.specialties) if self.specialties is not None else None,
            "location": asdict(location) if location is not None else None,
            "anonymous": self.anonymous,
        }


class QuestionNotFound(NotFound):
    """No question has this id."""

    def __init__(self, qid: str) -> None:
        super().__init__(f"no question {qid!r}")


class UnknownLocation(Invalid):
    """The asker's place is not in the gazetteer."""

    code = "unknown_place"


class BlankQuestion(Invalid):
    """The title or body is empty once cleaned."""


class NotYourQuestion(Forbidden):
    """Only the asker may edit their question."""

    code = "not_your_question"


class QuestionAnswered(Conflict):
    """A question with an answer can no longer be edited."""

    code = "question_answered"


class EditConflict(Conflict):
    """Another edit of the same question landed first."""

    code = "edit_conflict"


class AnswerNotOnPage(NotFound):
    """The picked answer is not (yet) on the question's page."""

    code = "answer_not_found"


class FollowConflict(Conflict):
    """Follow changes of one user kept racing; none of this request's landed."""

    code = "follow_conflict"


class BadCursor(Invalid):
    """A listing cursor this service did not hand out."""

    code = "bad_cursor"


class QuestionStorePort(Protocol):
    """What the questions service layer needs from its store."""

    tag: str

    async def post(
        self,
        doc: dict[str, Any],
        event: QuestionPosted,
        reply: ReplyRecord | None,
        write_limit: WriteLimit,
    ) -> CommitResult:
        """Store, index and announce a question atomically, behind its guards."""
        ...

    async def get(self, qid: str) -> dict[str, Any] | None:
        """A stored question, or None."""
        ...

    async def hidden(self, kind: str, item_id: str) -> bool:
        """Whether moderators hid the question or answer."""
        ...

    async def get_many(self, qids: list[str]) -> list[dict[str, Any]]:
        """Stored questions in the given order, skipping missing ones."""
        ...

    async def page_parts(
        self, qid: str
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, tuple[int, int]]]:
        """A question, its answers and their tallies."""
        ...

    async def answer_counts(self, qids: list[str]) -> list[int]:
        """How many answers each question's page shows (hidden ones left out), in order."""
        ...

    async def cached_page(self, qid: str, read: ReadCount | None) -> CachedPage:
        """The built page if current, else the version to build; counts `read`."""
        ...

    async def keep_page(self, qid: str, version: str, etag: str, body: bytes) -> None:
        """Keep a page built from the parts of `version`."""
        ...

    async def list_ids(
        self, kind: str, slug: str, after: str | None, count: int
    ) -> tuple[list[str], str | None]:
        """Ids newest first from one index, after a cursor member; and the next cursor."""
        ...

    async def recent_ids(self, kind: str, slug: str, count: int) -> list[str]:
        """The newest ids of an index."""
        ...

    async def add_answer(self, event: AnswerPosted) -> None:
        """Put an answer on its question's page."""
        ...

    async def edit_answer(self, event: AnswerEdited) -> None:
        """Show an answer's edited text on its page."""
        ...

    async def set_doctor_verified(self, doctor_id: str, version: int, verified: bool) -> None:
        """Record a doctor's verification now; their answers' cards show it."""
        ...

    async def edit(
        self, doc: dict[str, Any], revisions: list[dict[str, Any]], event: QuestionEdited
    ) -> CommitResult:
        """Store an edited question, its revision(s) and question-edited atomically."""
        ...

    async def revisions(self, qid: str) -> list[dict[str, Any]]:
        """A question's revisions, oldest first."""
        ...

    async def has_answers(self, qid: str) -> bool:
        """Whether any answer is on the question's page."""
        ...

    async def page_answer(self, qid: str, aid: str) -> dict[str, Any] | None:
        """One answer on the question's page, or None."""
        ...

    async def accept(self, doc: dict[str, Any], event: AnswerAccepted) -> CommitResult:
        """Store the asker's pick and publish answer-accepted atomically."""
        ...

    async def set_tally(self, event: VoteCast) -> None:
        """Record an answer's tally (newest wins)."""
        ...

    async def follow_state(self, qid: str, user_id: str, asker_id: str) -> tuple[bool, int]:
        """Whether a user follows a question now, and their follow changes so far."""
        ...

    async def set_following(
        self,
        qid: str,
        user_id: str,
        at_ms: int,
        event: QuestionFollowed | QuestionUnfollowed,
    ) -> CommitResult:
        """Follow or unfollow as the event says, with the event, atomically (version guard)."""
        ...

    async def follow_info(self, qid: str, user_id: str | None) -> tuple[int, bool]:
        """How many follow a question, and whether `user_id` is one of them."""
        ...


@dataclass(frozen=True)
class PageView:
    """The question page as JSON bytes and its ETag; no body when the reader's is current."""

    etag: str
    body: bytes | None


def page_etag(body: bytes) -> str:
    """A strong ETag: a digest of the page's bytes."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match header names `etag` (weak comparison, as RFC 9110 says)."""
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


class QuestionsService:
    """Posting and reading questions; keeping the page read model current."""

    def __init__(self, store: QuestionStorePort, settings: Settings, limit: WriteLimit) -> None:
        self.store = store
        self.settings = settings
        self.limit = limit

    async def post_question(self, command: PostQuestion) -> dict[str, Any]:
        """Validate, store and announce a question; replay on a repeated Idempotency-Key."""
        key = command.idempotency_key
        # Only a repeatable request needs its fingerprint: most send no key.
        write = IdempotentWrite.of(key, command.request()) if key else None
        topics = taxonomy.check_topics(command.topics)
        named = taxonomy.check_specialties(command.specialties or ())
        place = None
        if command.location is not None:
            loc = command.location
            try:
                # A dict lookup: the gazetteer indexes are built before readiness.
                place = loc.locate()
            except geo.UnknownPlace as exc:
                raise UnknownLocation(str(exc)) from None
            if place.city is None:
                # Bare coordinates: the page names the nearest city (a grid lookup).
                near = geo.nearest_city(place.lat, place.lon)
                if near is not None:
                    place = geo.Place(near.city, near.state, None, place.lat, place.lon)
        title = clean_text(command.title)
        body = clean_text(command.body)
        if not title or not body:
            raise BlankQuestion("title and body must not be blank")
        flags = triage.triage(title, body)
        now = datetime.now(UTC)
        qid = domain.new_question_id(int(now.timestamp() * 1000))
        location = domain.place_dict(place) if place else None
        doc: dict[str, Any] = {
            "id": qid,
            "title": title,
            "body": body,
            "topics": topics,
            "specialties": list(domain.specialties_for(topics, named)),
            "location": location,
            "status": "open",
            "created_at": now.isoformat(),
            "created_ms": int(now.timestamp() * 1000),
            "anonymous": command.anonymous,
            "asker_id": command.asker_id,
            "asker_name": command.asker_name,
            "asker_role": command.asker_role,
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
            asker_id=command.asker_id,
            anonymous=command.anonymous,
            urgent=flags.urgent,
            red_flags=list(flags.flags),
            occurred_at=now,
        )
        reply = self._public(doc)
        record = idempotency.reply_record(
            self.store.tag, command.asker_id, write, reply, self.settings.idempotency_ttl_s
        )
        result = await self.store.post(doc, event, record, self.limit)
        if result.failed_guard == ratelimit.GUARD:
            raise self.limit.exceeded(result.found or 1)
        if not result.applied:
            replayed: dict[str, Any] = idempotency.replay(result.found or "{}", write)
            return replayed
        events_published(SERVICE, event.stream).inc()
        log.info("question_posted", question_id=qid, topics=topics, urgent=flags.urgent)
        return reply

    def _public(self, doc: dict[str, Any]) -> dict[str, Any]:
        public = domain.public_question(doc)
        public.pop("created_ms", None)
        public["location"] = domain.coarse_location(doc.get("location"))
        if doc.get("urgent"):
            public["emergency_notice"] = triage.EMERGENCY_NOTICE
        return public

    async def page_view(
        self, qid: str, if_none_match: str | None, read: ReadCount | None
    ) -> PageView:
        """The page as built bytes with its ETag, built again only when it changed.

        One round trip when the built page is current (and `read`, an anonymous reader's,
        is counted in it); no body when `if_none_match` names the current ETag.
        """
        cached = await self.store.cached_page(qid, read)
        if cached.limited_for_s is not None and read is not None:
            raise read.exceeded(cached.limited_for_s)
        etag, body = cached.etag, cached.body
        if etag is None or body is None:
            page = await self.page(qid)
            body = json.dumps(page, ensure_ascii=False, separators=(",", ":")).encode()
            etag = page_etag(body)
            await self.store.keep_page(qid, cached.version, etag, body)
        if if_none_match and etag_matches(if_none_match, etag):
            return PageView(etag, None)
        return PageView(etag, body)

    async def page(self, qid: str, reader_id: str | None = None) -> dict[str, Any]:
        """The question page: question, ranked answers with votes, count, disclaimer.

        With followers: `follower_count`, and `following` for a signed-in reader; `yours`
        tells a signed-in reader whether they asked it (an anonymous asker too, and only them).
        """
        (doc, answers, tallies), (followers, following) = await asyncio.gather(
            self.store.page_parts(qid), self.store.follow_info(qid, reader_id)
        )
        if doc is None:
            raise QuestionNotFound(qid)
        page = self._public(doc)
        page["follower_count"] = followers
        if reader_id is not None:
            page["following"] = following
            page["yours"] = doc.get("asker_id") == reader_id
        ranked = domain.rank_answers(answers, tallies)
        accepted = doc.get("accepted_answer_id")
        # The asker's pick comes first, apart from the ranking; the rest keep their order.
        ranked.sort(key=lambda r: r.answer["id"] != accepted)
        page["answers"] = [
            {
                **r.answer,
                "helpful": r.helpful,
                "unhelpful": r.unhelpful,
                "score": round(r.score, 4),
                "accepted": r.answer["id"] == accepted,
            }
            for r in ranked
        ]
        page["answer_count"] = len(ranked)
        if not any(a["accepted"] for a in page["answers"]):
            # a pick the moderators hid is not shown, nor named
            page.pop("accepted_answer_id", None)
        if ranked:
            page["status"] = "answered"
        page["disclaimer"] = domain.DISCLAIMER
        return page

    async def edit_question(
        self, qid: str, asker_id: str, title: str | None, body: str | None
    ) -> dict[str, Any]:
        """Change a question's title and/or body while it has no answer; keep the revisions.

        Topics, specialties and place stay as asked (doctors were matched on them);
        notify does not consume question-edited, so an edit alerts no one again.
        A question moderators hid is not found, as on its page.
        """
        doc = await self.store.get(qid)
        if doc is None or await self.store.hidden("question", qid):
            raise QuestionNotFound(qid)
        if doc["asker_id"] != asker_id:
            raise NotYourQuestion("only the asker may edit a question")
        if await self.store.has_answers(qid):
            raise QuestionAnswered("a question that has an answer can no longer be edited")
        new_title = clean_text(title) if title is not None else doc["title"]
        new_body = clean_text(body) if body is not None else doc["body"]
        if not new_title or not new_body:
            raise BlankQuestion("title and body must not be blank")
        now = datetime.now(UTC)
        revision = int(doc.get("revision", 1)) + 1
        revisions = []
        if revision == 2:
            revisions.append(domain.revision_of(doc, 1, doc["created_at"]))
        edited = {**doc, "title": new_title, "body": new_body}
        edited.update(revision=revision, edited_at=now.isoformat())
        revisions.append(domain.revision_of(edited, revision, now.isoformat()))
        event = QuestionEdited(
            correlation_id=current_correlation_id(),
            producer=SERVICE,
            question_id=qid,
            title=new_title,
            body=new_body,
            revision=revision,
            edited_at=now,
            occurred_at=now,
        )
        result = await self.store.edit(edited, revisions, event)
        if not result.applied:
            raise EditConflict("the question was edited at the same moment; reload and retry")
        events_published(SERVICE, event.stream).inc()
        log.info("question_edited", question_id=qid, revision=revision)
        return self._public(edited)

    async def accept_answer(self, qid: str, asker_id: str, aid: str) -> dict[str, Any]:
        """The asker marks one answer "most helpful to me" (a new pick replaces the old).

        Neither a hidden question nor a hidden answer can be picked: not found, as on the page.
        """
        doc = await self.store.get(qid)
        if doc is None or await self.store.hidden("question", qid):
            raise QuestionNotFound(qid)
        if doc["asker_id"] != asker_id:
            raise NotYourQuestion("only the asker may pick the answer that helped them")
        answer = await self.store.page_answer(qid, aid)
        if answer is None or await self.store.hidden("answer", aid):
            raise AnswerNotOnPage(f"no answer {aid!r} on this question's page")
        previous = doc.get("accepted_answer_id")
        if previous == aid:
            return await self.page(qid)
        event = AnswerAccepted(
            correlation_id=current_correlation_id(),
            producer=SERVICE,
            question_id=qid,
            answer_id=aid,
            doctor_id=answer["doctor"]["id"],
            previous_answer_id=previous,
        )
        await self.store.accept({**doc, "accepted_answer_id": aid}, event)
        events_published(SERVICE, event.stream).inc()
        log.info("answer_accepted", question_id=qid, answer_id=aid, changed=previous is not None)
        return await self.page(qid)

    async def set_following(self, qid: str, user_id: str, following: bool) -> dict[str, Any]:
        """Follow (or unfollow) a question; idempotent: a repeat changes and publishes nothing.

        Each change bumps the user's follow version, which the event carries, so notify's
        projection keeps the newest state whatever order events arrive in.
        """
        doc = await self.store.get(qid)
        if doc is None:
            raise QuestionNotFound(qid)
        if following and await self.store.hidden("question", qid):
            # A hidden question is gone for readers; one may still stop following it.
            raise QuestionNotFound(qid)
        for _ in range(3):
            now_following, version = await self.store.follow_state(qid, user_id, doc["asker_id"])
            if now_following == following:
                break
            now = datetime.now(UTC)
            kind = QuestionFollowed if following else QuestionUnfollowed
            event = kind(
                correlation_id=current_correlation_id(),
                producer=SERVICE,
                question_id=qid,
                user_id=user_id,
                follow_version=version + 1,
                occurred_at=now,
            )
            result = await self.store.set_following(
                qid, user_id, int(now.timestamp() * 1000), event
            )
            if result.failed_guard == "question":
                raise QuestionNotFound(qid)
            if result.applied:
                events_published(SERVICE, event.stream).inc()
                log.info("question_follow_changed", question_id=qid, following=following)
                break
        else:
            raise FollowConflict("the follow changed at the same moment; retry")
        count, now_following = await self.store.follow_info(qid, user_id)
        return {"question_id": qid, "following": now_following, "follower_count": count}

    async def revisions_of(self, qid: str) -> dict[str, Any]:
        """A question's revisions, oldest first (just the original if never edited)."""
        doc = await self.store.get(qid)
        if doc is None or await self.store.hidden("question", qid):
            raise QuestionNotFound(qid)
        items = await self.store.revisions(qid) or [domain.revision_of(doc, 1, doc["created_at"])]
        return {"question_id": qid, "items": items}

    async def list_questions(
        self, topic: str | None, specialty: str | None, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        """Newest first, filtered by topic and specialty, paged by cursor; each item with
        its `answer_count` as its page counts it (answers moderators hid left out)."""
        after = None
        if cursor:
            try:
                after = decode_cursor(cursor)
            except ValueError:
                raise BadCursor("cursor is not valid; start without one") from None
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
        # With both filters the topic index drives and specialty filters: read in batches,
        # and at most LIST_SCAN_LIMIT entries per request (the cursor goes on from there).
        batch = limit if not (topic_slug and spec_slug) else max(limit, LIST_BATCH)
        while len(items) < limit and scanned < LIST_SCAN_LIMIT:
            count = min(batch, LIST_SCAN_LIMIT - scanned)
            ids, next_cursor = await self.store.list_ids(kind, slug, after, count)
            scanned += len(ids)
            for doc in await self.store.get_many(ids):
                if topic_slug and spec_slug and spec_slug not in doc["specialties"]:
                    continue
                items.append(self._public(doc))
                if len(items) == limit:
                    # Stopped inside the batch: go on right after the last one shown.
                    next_cursor = encode_cursor(index_member(doc))
                    break
            if next_cursor is None:
                break
            after = decode_cursor(next_cursor)
        # Each item's count as its page shows it, read for the whole listing at once: a
        # listing page (the web's home) then needs no call per question to the answers.
        counts = await self.store.answer_counts([item["id"] for item in items])
        for item, count in zip(items, counts, strict=True):
            item["answer_count"] = count
        return {"items": items, "next_cursor": next_cursor}

    async def related(self, qid: str, limit: int) -> list[dict[str, Any]]:
        """Questions most related to `qid` by topic overlap and title words."""
        doc = await self.store.get(qid)
        if doc is None or await self.store.hidden("question", qid):
            raise QuestionNotFound(qid)
        candidates: dict[str, None] = {}
        # A bounded read: RELATED_CANDIDATES questions at most, shared among the topics.
        per_topic = max(10, RELATED_CANDIDATES // max(1, len(doc["topics"])))
        for topic in doc["topics"]:
            for other_id in await self.store.recent_ids("topic", topic, per_topic):
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

    async def on_answer_edited(self, event: AnswerEdited) -> None:
        """Show the answer's edited text on its question's page (newest revision wins)."""
        await self.store.edit_answer(event)
        log.info("page_answer_edited", answer_id=event.answer_id, revision=event.revision)

    async def on_doctor_profile_changed(self, event: DoctorProfileChanged) -> None:
        """Keep whether the doctor is verified now: their answers' cards show it."""
        verified = event.status == "verified"
        await self.store.set_doctor_verified(event.doctor_id, event.profile_version, verified)
        log.info("page_doctor_status", doctor_id=event.doctor_id, verified=verified)

    async def on_vote_cast(self, event: VoteCast) -> None:
        """Keep the page's tally of the answer (newest tally wins)."""
        await self.store.set_tally(event)
