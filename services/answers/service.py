"""Use cases of the answers service, called by the HTTP routes and event handlers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol

from shared import idempotency
from shared.atomic import CommitResult
from shared.errors import Conflict, Forbidden, NotFound
from shared.events import (
    AnswerEdited,
    AnswerPosted,
    DoctorCard,
    DoctorProfileChanged,
    ItemKind,
    ModerationDecided,
    QuestionPosted,
)
from shared.idempotency import IdempotentWrite, ReplyRecord
from shared.logging import current_correlation_id, get_logger
from shared.metrics import EVENTS_PUBLISHED
from shared.settings import Settings

from . import domain
from .store import QUESTION_GUARD, REVISION_GUARD

log = get_logger("askdoc.answers")

SERVICE = "answers"


@dataclass(frozen=True)
class PostAnswer:
    """A doctor answers a question (at most once per question)."""

    question_id: str
    doctor_id: str
    body: str
    headline: str | None = None
    idempotency_key: str | None = None

    def request(self) -> dict[str, Any]:
        """What the doctor asks for, as an Idempotency-Key fingerprints it."""
        return {"question_id": self.question_id, "headline": self.headline, "body": self.body}


class QuestionNotFound(NotFound):
    """The question is not (yet) known to the answers service."""

    def __init__(self, qid: str) -> None:
        super().__init__(
            f"no question {qid!r} (a question just posted can take a moment to appear here)"
        )


class AnswerNotFound(NotFound):
    """No answer has this id."""


class DoctorNotInDirectory(Forbidden):
    """The answering doctor has no profile in the directory (yet)."""

    code = "doctor_not_in_directory"


class DoctorNotVerified(Forbidden):
    """The answering doctor is in the directory but not verified (pending or suspended)."""

    code = "doctor_not_verified"


class AlreadyAnswered(Conflict):
    """The doctor has answered this question before (`answer_id` is that answer)."""

    code = "already_answered"


class NotYourAnswer(Forbidden):
    """Only the answer's doctor may edit it."""

    code = "not_your_answer"


class EditConflict(Conflict):
    """Another edit of the same answer landed first."""

    code = "edit_conflict"


class Keep(Enum):
    """What an edit leaves as it was: a field its request did not carry."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True)
class EditAnswer:
    """A doctor edits their own answer: only the fields given change (a None headline
    removes it; a body cannot be removed)."""

    answer_id: str
    doctor_id: str
    body: str | Keep = KEEP
    headline: str | Keep | None = KEEP


class AnswerStorePort(Protocol):
    """What the answers service layer needs from its store."""

    tag: str

    async def post(
        self,
        answer: dict[str, Any],
        created_ms: int,
        event: AnswerPosted,
        reply: ReplyRecord | None,
    ) -> CommitResult:
        """Store an answer and publish its event atomically, behind its guards."""
        ...

    async def edit(
        self, answer: dict[str, Any], revisions: list[dict[str, Any]], event: AnswerEdited
    ) -> CommitResult:
        """Store an edited answer, its revision(s) and answer-edited atomically."""
        ...

    async def revisions(self, aid: str) -> list[dict[str, Any]]:
        """An answer's revisions, oldest first."""
        ...

    async def get(self, aid: str) -> dict[str, Any] | None:
        """A stored answer, or None."""
        ...

    async def answers_of(self, qid: str) -> list[dict[str, Any]] | None:
        """A question's answers, oldest first; None if the question is unknown."""
        ...

    async def question_known(self, qid: str) -> bool:
        """Whether the question has reached this service's projection."""
        ...

    async def doctor_card(self, doctor_id: str) -> dict[str, Any] | None:
        """A doctor's projected public card, or None."""
        ...

    async def add_question(self, qid: str, asker_id: str) -> None:
        """Project a question."""
        ...

    async def is_hidden(self, item_id: str, kind: ItemKind = "answer") -> bool:
        """Whether moderators hid the answer (or the question)."""
        ...

    async def set_hidden(
        self, item_id: str, version: int, hidden: bool, kind: ItemKind = "answer"
    ) -> None:
        """Record a moderation decision on an answer or a question (newest version wins)."""
        ...

    async def set_doctor(self, doctor_id: str, version: int, card: dict[str, Any]) -> None:
        """Project a doctor's card (newest version wins)."""
        ...


class AnswersService:
    """Posting and reading answers; keeping the question and doctor projections."""

    def __init__(self, store: AnswerStorePort, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def post_answer(self, command: PostAnswer) -> dict[str, Any]:
        """Validate, store and announce a doctor's answer; replay on a repeated Idempotency-Key.

        The answering doctor must be in the directory (a profile saved with
        ``PUT /doctors/{id}`` on notify, projected here from doctor-profile-changed):
        an answer shows the doctor's public card, and a bare token carries no
        credentials, specialty or location to show. A doctor not (yet) projected is
        refused with ``DoctorNotInDirectory`` rather than given an answer with an empty card.
        """
        qid, doctor_id = command.question_id, command.doctor_id
        key = command.idempotency_key
        # Only a repeatable request needs its fingerprint: most send no key.
        write = IdempotentWrite.of(key, command.request()) if key else None
        headline, body = domain.clean_answer(command.headline, command.body)
        if not await self.store.question_known(qid) or await self.store.is_hidden(qid, "question"):
            raise QuestionNotFound(qid)
        card = await self.store.doctor_card(doctor_id)
        if card is None:
            raise DoctorNotInDirectory(
                "you are not in the doctor directory yet: register your profile with "
                f"PUT /doctors/{doctor_id} first"
            )
        if not card.get("verified"):
            raise DoctorNotVerified(
                "only verified doctors may answer: an admin verifies your NPI first"
            )
        now = datetime.now(UTC)
        created_ms = int(now.timestamp() * 1000)
        aid = domain.new_answer_id(created_ms)
        answer = domain.new_answer(aid, qid, headline, body, card, now.isoformat())
        event = AnswerPosted(
            correlation_id=current_correlation_id(),
            producer=SERVICE,
            answer_id=aid,
            question_id=qid,
            headline=headline,
            body=body,
            doctor=DoctorCard(**card),
            created_at=now,
            occurred_at=now,
        )
        reply = idempotency.reply_record(
            self.store.tag, doctor_id, write, answer, self.settings.idempotency_ttl_s
        )
        result = await self.store.post(answer, created_ms, event, reply)
        if not result.applied:
            if result.failed_guard == idempotency.GUARD:
                replayed: dict[str, Any] = idempotency.replay(result.found or "{}", write)
                return replayed
            if result.failed_guard == QUESTION_GUARD:
                raise QuestionNotFound(qid)
            existing = result.found or ""
            raise AlreadyAnswered(
                f"you have already answered this question (answer {existing})",
                answer_id=existing,
            )
        EVENTS_PUBLISHED.labels(SERVICE, event.stream).inc()
        log.info("answer_posted", answer_id=aid, question_id=qid, doctor_id=doctor_id)
        return answer

    async def edit_answer(self, command: EditAnswer) -> dict[str, Any]:
        """Change an answer's text, keep the earlier text as a revision, announce the edit.

        The original becomes revision 1 at the first edit; notify does not consume
        answer-edited, so an edit alerts no one again.
        """
        answer = await self.store.get(command.answer_id)
        if answer is None or await self._hidden(answer):
            # a hidden answer (or one on a hidden question) is gone: not found, as for reads
            raise AnswerNotFound(f"no answer {command.answer_id!r}")
        if answer["doctor"]["id"] != command.doctor_id:
            raise NotYourAnswer("only the doctor who wrote an answer may edit it")
        card = await self.store.doctor_card(command.doctor_id)
        if card is not None and not card.get("verified"):
            # a suspended doctor's answers stay, unmarked; their text no longer changes
            raise DoctorNotVerified("only verified doctors may edit their answers")
        headline, body = domain.clean_answer(
            answer.get("headline") if command.headline is KEEP else command.headline,
            answer["body"] if command.body is KEEP else command.body,
        )
        now = datetime.now(UTC)
        revision = int(answer.get("revision", 1)) + 1
        revisions = []
        if revision == 2:
            revisions.append(domain.revision_of(answer, 1, answer["created_at"]))
        edited = {**answer, "headline": headline, "body": body}
        edited.update(revision=revision, edited_at=now.isoformat())
        revisions.append(domain.revision_of(edited, revision, now.isoformat()))
        event = AnswerEdited(
            correlation_id=current_correlation_id(),
            producer=SERVICE,
            answer_id=answer["id"],
            question_id=answer["question_id"],
            doctor_id=command.doctor_id,
            headline=headline,
            body=body,
            revision=revision,
            edited_at=now,
            occurred_at=now,
        )
        result = await self.store.edit(edited, revisions, event)
        if not result.applied and result.failed_guard == REVISION_GUARD:
            raise EditConflict("the answer was edited at the same moment; reload and retry")
        EVENTS_PUBLISHED.labels(SERVICE, event.stream).inc()
        log.info("answer_edited", answer_id=answer["id"], revision=revision)
        return edited

    async def _hidden(self, answer: dict[str, Any]) -> bool:
        """Whether moderators hid the answer or its question."""
        return await self.store.is_hidden(answer["id"]) or await self.store.is_hidden(
            answer["question_id"], "question"
        )

    async def revisions_of(self, aid: str) -> dict[str, Any]:
        """An answer's revisions, oldest first (just the original if never edited)."""
        answer = await self.store.get(aid)
        if answer is None or await self.store.is_hidden(aid):
            raise AnswerNotFound(f"no answer {aid!r}")
        items = await self.store.revisions(aid)
        if not items:
            items = [domain.revision_of(answer, 1, answer["created_at"])]
        return {"answer_id": aid, "items": items}

    async def answers_of(self, qid: str) -> dict[str, Any]:
        """A question's answers, oldest first, and their count (hidden ones left out)."""
        items = await self.store.answers_of(qid)
        if items is None or await self.store.is_hidden(qid, "question"):
            raise QuestionNotFound(qid)
        return {"question_id": qid, "items": items, "answer_count": len(items)}

    async def get_answer(self, aid: str) -> dict[str, Any]:
        """One answer (not one the moderators hid)."""
        answer = await self.store.get(aid)
        if answer is None or await self.store.is_hidden(aid):
            raise AnswerNotFound(f"no answer {aid!r}")
        return answer

    async def on_question_posted(self, event: QuestionPosted) -> None:
        """Know the question, so doctors can answer it."""
        await self.store.add_question(event.question_id, event.asker_id)
        log.info("question_projected", question_id=event.question_id)

    async def on_moderation_decided(self, event: ModerationDecided) -> None:
        """Leave a hidden answer out of its question's listing, and refuse answers to (and
        the listing of) a hidden question; a restore brings them back."""
        hidden = event.decision == "hidden"
        kind = event.item_kind
        await self.store.set_hidden(event.item_id, event.decision_version, hidden, kind)
        log.info("item_moderated", kind=kind, item_id=event.item_id, hidden=hidden)

    async def on_doctor_profile_changed(self, event: DoctorProfileChanged) -> None:
        """Keep the doctor's public card (newest profile version wins)."""
        card = domain.doctor_card(event.doctor_id, event.model_dump(mode="json"))
        await self.store.set_doctor(event.doctor_id, event.profile_version, card)
        log.info(
            "doctor_projected", doctor_id=event.doctor_id, profile_version=event.profile_version
        )
