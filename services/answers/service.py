"""Use cases of the answers service, called by the HTTP routes and event handlers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.auth import Principal
from shared.errors import ApiError
from shared.events import AnswerPosted, DoctorCard, DoctorProfileChanged, QuestionPosted
from shared.http import fingerprint, idempotency_guard, replay
from shared.logging import current_correlation_id, get_logger
from shared.metrics import EVENTS_PUBLISHED
from shared.settings import Settings

from . import domain
from .store import IDEMPOTENCY_GUARD, QUESTION_GUARD, AnswerStore

if TYPE_CHECKING:
    from .api import AnswerIn

log = get_logger("askdoc.answers")

SERVICE = "answers"


def _no_question(qid: str) -> ApiError:
    return ApiError(
        404,
        "not_found",
        f"no question {qid!r} (a question just posted can take a moment to appear here)",
    )


class AnswersService:
    """Posting and reading answers; keeping the question and doctor projections."""

    def __init__(self, store: AnswerStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def post_answer(
        self, user: Principal, qid: str, payload: AnswerIn, idempotency_key: str | None
    ) -> tuple[int, dict[str, Any]]:
        """Validate, store and announce a doctor's answer; replay on a repeated Idempotency-Key.

        The answering doctor must be in the directory (a profile saved with
        ``PUT /doctors/{id}`` on notify, projected here from doctor-profile-changed):
        an answer shows the doctor's public card, and a bare token carries no
        credentials, specialty or location to show. A doctor not (yet) projected gets
        403 ``doctor_not_in_directory`` rather than an answer with an empty card.
        """
        request_fp = (
            fingerprint({"question_id": qid, **payload.model_dump()}) if idempotency_key else ""
        )
        try:
            headline, body = domain.clean_answer(payload.headline, payload.body)
        except domain.InvalidAnswer as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
        if not await self.store.question_known(qid):
            raise _no_question(qid)
        card = await self.store.doctor_card(user.sub)
        if card is None:
            raise ApiError(
                403,
                "doctor_not_in_directory",
                "you are not in the doctor directory yet: register your profile with "
                f"PUT /doctors/{user.sub} first",
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
        idempotency = idempotency_guard(
            self.store.tag,
            user.sub,
            idempotency_key,
            201,
            answer,
            request_fp,
            self.settings.idempotency_ttl_s,
        )
        result = await self.store.post(answer, created_ms, event, idempotency)
        if not result.applied:
            if result.failed_guard == IDEMPOTENCY_GUARD:
                return replay(result.found or "{}", request_fp)
            if result.failed_guard == QUESTION_GUARD:
                raise _no_question(qid)
            existing = result.found or ""
            raise ApiError(
                409,
                "already_answered",
                f"you have already answered this question (answer {existing})",
                answer_id=existing,
            )
        EVENTS_PUBLISHED.labels(SERVICE, event.stream).inc()
        log.info("answer_posted", answer_id=aid, question_id=qid, doctor_id=user.sub)
        return 201, answer

    async def answers_of(self, qid: str) -> dict[str, Any]:
        """A question's answers, oldest first, and their count."""
        items = await self.store.answers_of(qid)
        if items is None:
            raise _no_question(qid)
        return {"question_id": qid, "items": items, "answer_count": len(items)}

    async def get_answer(self, aid: str) -> dict[str, Any]:
        """One answer."""
        answer = await self.store.get(aid)
        if answer is None:
            raise ApiError(404, "not_found", f"no answer {aid!r}")
        return answer

    async def on_question_posted(self, event: QuestionPosted) -> None:
        """Know the question, so doctors can answer it."""
        await self.store.add_question(event.question_id, event.asker_id)
        log.info("question_projected", question_id=event.question_id)

    async def on_doctor_profile_changed(self, event: DoctorProfileChanged) -> None:
        """Keep the doctor's public card (newest profile version wins)."""
        card = domain.doctor_card(event.doctor_id, event.model_dump(mode="json"))
        await self.store.set_doctor(event.doctor_id, event.profile_version, card)
        log.info(
            "doctor_projected", doctor_id=event.doctor_id, profile_version=event.profile_version
        )
