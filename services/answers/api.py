"""HTTP routes of the answers service."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from shared.auth import Principal
from shared.http import IdempotencyKey, writer

from . import domain
from .service import AnswersService

router = APIRouter(tags=["answers"])

Answerer = Annotated[Principal, writer("doctor")]
QuestionId = Annotated[str, Path(max_length=64)]
AnswerId = Annotated[str, Path(max_length=64)]


class AnswerIn(BaseModel):
    """A doctor's answer: plain text (markup is kept as literal text, never interpreted)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    headline: str | None = Field(None, max_length=domain.MAX_HEADLINE)
    body: str = Field(min_length=domain.MIN_BODY, max_length=domain.MAX_BODY)


def _app(request: Request) -> AnswersService:
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
    status, body = await _app(request).post_answer(user, question_id, payload, idempotency_key)
    return JSONResponse(body, status_code=status)


@router.get("/questions/{question_id}/answers", summary="A question's answers, oldest first")
async def list_answers(question_id: QuestionId, request: Request) -> dict[str, Any]:
    """The answers with each doctor's card, and the answer count."""
    return await _app(request).answers_of(question_id)


@router.get("/answers/{answer_id}", summary="One answer")
async def get_answer(answer_id: AnswerId, request: Request) -> dict[str, Any]:
    """The answer with its doctor's card."""
    return await _app(request).get_answer(answer_id)
