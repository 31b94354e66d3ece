"""HTTP routes of the answers service."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.auth import Principal
from shared.errors import DomainError
from shared.http import AnyReader, IdempotencyKey, writer
from shared.idempotency import IdempotencyKeyReused
from shared.ids import ResourceId

from . import domain
from .service import (
    KEEP,
    AlreadyAnswered,
    AnswerNotFound,
    AnswersService,
    DoctorNotInDirectory,
    DoctorNotVerified,
    EditAnswer,
    EditConflict,
    NotYourAnswer,
    PostAnswer,
    QuestionNotFound,
)

router = APIRouter(tags=["answers"])

Answerer = Annotated[Principal, writer("doctor")]
QuestionId = ResourceId
AnswerId = ResourceId


class AnswerIn(BaseModel):
    """A doctor's answer: plain text (markup is kept as literal text, never interpreted)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    headline: str | None = Field(None, max_length=domain.MAX_HEADLINE)
    body: str = Field(min_length=domain.MIN_BODY, max_length=domain.MAX_BODY)


class AnswerEditIn(BaseModel):
    """An edit of one's answer: only the fields sent change; `"headline": null` removes
    the headline; the body can be replaced, never removed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    headline: str | None = Field(None, max_length=domain.MAX_HEADLINE)
    body: str | None = Field(
        None, min_length=domain.MIN_BODY, max_length=domain.MAX_BODY, description="never null"
    )

    @field_validator("body", mode="before")
    @classmethod
    def _body_not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("the body cannot be removed: send the new text, or leave it out")
        return value

    @model_validator(mode="after")
    def _something_to_change(self) -> AnswerEditIn:
        if not self.model_fields_set:
            raise ValueError("nothing to change: send a headline and/or a body")
        return self


#: How the answers service layer's refusals read over HTTP.
STATUSES: dict[type[DomainError], int] = {
    domain.InvalidAnswer: 422,
    IdempotencyKeyReused: 422,
    QuestionNotFound: 404,
    AnswerNotFound: 404,
    DoctorNotInDirectory: 403,
    DoctorNotVerified: 403,
    AlreadyAnswered: 409,
    NotYourAnswer: 403,
    EditConflict: 409,
}


def answers_service(request: Request) -> AnswersService:
    """The answers service layer this app was built with."""
    svc: AnswersService = request.app.state.service
    return svc


@router.post(
    "/questions/{question_id}/answers", status_code=201, summary="Answer a question (doctors)"
)
async def post_answer(
    question_id: QuestionId,
    payload: AnswerIn,
    request: Request,
    user: Answerer,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Store the answer and publish answer-posted in one atomic step; one per doctor."""
    command = PostAnswer(
        question_id=question_id,
        doctor_id=user.sub,
        headline=payload.headline,
        body=payload.body,
        idempotency_key=idempotency_key,
    )
    return JSONResponse(await answers_service(request).post_answer(command), status_code=201)


@router.get("/questions/{question_id}/answers", summary="A question's answers, oldest first")
async def list_answers(
    question_id: QuestionId, request: Request, _reader: AnyReader
) -> dict[str, Any]:
    """The answers with each doctor's card, and the answer count."""
    return await answers_service(request).answers_of(question_id)


@router.get("/answers/{answer_id}", summary="One answer")
async def get_answer(answer_id: AnswerId, request: Request, _reader: AnyReader) -> dict[str, Any]:
    """The answer with its doctor's card."""
    return await answers_service(request).get_answer(answer_id)


@router.patch("/answers/{answer_id}", summary="Edit one's answer (its doctor)")
async def edit_answer(
    answer_id: AnswerId, payload: AnswerEditIn, request: Request, user: Answerer
) -> dict[str, Any]:
    """Change the fields sent (a field left out stays); the earlier text stays in revisions."""
    sent = payload.model_fields_set
    command = EditAnswer(
        answer_id=answer_id,
        doctor_id=user.sub,
        headline=payload.headline if "headline" in sent else KEEP,
        body=payload.body if payload.body is not None else KEEP,
    )
    return await answers_service(request).edit_answer(command)


@router.get("/answers/{answer_id}/revisions", summary="An answer's revisions, oldest first")
async def answer_revisions(
    answer_id: AnswerId, request: Request, _reader: AnyReader
) -> dict[str, Any]:
    """Every kept text of the answer with its revision number and time."""
    return await answers_service(request).revisions_of(answer_id)
