"""HTTP routes of the questions service."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from shared import taxonomy
from shared.auth import Principal
from shared.errors import ApiError
from shared.http import IdempotencyKey, writer

from .service import QuestionsService

router = APIRouter(tags=["questions"])

Asker = Annotated[Principal, writer("patient", "admin", limit_in_commit=True)]


class LocationIn(BaseModel):
    """Where the asker is: a ZIP code, a city and state, or coordinates."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    zip: str | None = Field(None, pattern=r"^\d{5}(-\d{4})?$", examples=["90012"])
    city: str | None = Field(None, min_length=1, max_length=100, examples=["Los Angeles"])
    state: str | None = Field(None, min_length=2, max_length=40, examples=["CA"])
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


class QuestionIn(BaseModel):
    """A new question. Topics are taxonomy slugs or names (see GET /taxonomy)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=10, max_length=300)
    body: str = Field(min_length=1, max_length=10_000)
    topics: list[Annotated[str, Field(min_length=1, max_length=80)]] = Field(
        min_length=1, max_length=10
    )
    specialties: list[Annotated[str, Field(min_length=1, max_length=80)]] | None = Field(
        None, max_length=10
    )
    location: LocationIn | None = None
    anonymous: bool = False


def _app(request: Request) -> QuestionsService:
    svc: QuestionsService = request.app.state.service
    return svc


@router.post("/questions", status_code=201, summary="Ask a question")
async def post_question(
    payload: QuestionIn, request: Request, user: Asker, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Store the question and publish question-posted in one atomic step."""
    status, body = await _app(request).post_question(user, payload, idempotency_key)
    return JSONResponse(body, status_code=status)


@router.get("/questions/{question_id}", summary="The question page")
async def get_question(
    question_id: Annotated[str, Field(max_length=64)], request: Request
) -> dict[str, Any]:
    """The question with its answers ranked best first, answer count and disclaimer."""
    page = await _app(request).page(question_id)
    if page is None:
        raise ApiError(404, "not_found", f"no question {question_id!r}")
    return page


@router.get("/questions", summary="List questions, newest first")
async def list_questions(
    request: Request,
    topic: Annotated[str | None, Query(max_length=80)] = None,
    specialty: Annotated[str | None, Query(max_length=80)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Questions filtered by topic and/or specialty, with an opaque cursor."""
    return await _app(request).list_questions(topic, specialty, limit, cursor)


@router.get("/questions/{question_id}/related", summary="Related questions")
async def related_questions(
    question_id: Annotated[str, Field(max_length=64)],
    request: Request,
    limit: Annotated[int, Query(ge=1, le=20)] = 5,
) -> dict[str, Any]:
    """Questions sharing topics (and title words) with this one, most related first."""
    items = await _app(request).related(question_id, limit)
    if items is None:
        raise ApiError(404, "not_found", f"no question {question_id!r}")
    return {"question_id": question_id, "items": items}


@router.get("/taxonomy", summary="Specialties (with NUCC codes) and topics")
async def get_taxonomy() -> dict[str, list[dict[str, Any]]]:
    """The controlled vocabulary used for matching."""
    return taxonomy.as_dict()
