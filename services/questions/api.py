"""HTTP routes of the questions service."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import to_json

from shared import taxonomy
from shared.auth import Principal, optional_user, require_user
from shared.errors import DomainError
from shared.http import (
    IDEMPOTENCY_KEY_MAX,
    AnyReader,
    IdempotencyKey,
    JSONBytes,
    json_body,
    lean_route,
    read_to_count,
    writer,
    writer_check,
)
from shared.idempotency import IdempotencyKeyReused
from shared.ids import ResourceId, is_resource_id
from shared.schemas import LocationIn
from shared.taxonomy import UnknownSlugs

from .service import (
    AnswerNotOnPage,
    BadCursor,
    BlankQuestion,
    EditConflict,
    FollowConflict,
    NotYourQuestion,
    PostQuestion,
    QuestionAnswered,
    QuestionNotFound,
    QuestionsService,
    UnknownLocation,
)

router = APIRouter(tags=["questions"])

#: Patients and admins ask; the write limit is counted in the question's own commit.
admit_asker = writer_check("patient", "admin", limit_in_commit=True)
Asker = Annotated[Principal, Depends(admit_asker)]
Editor = Annotated[Principal, writer("patient", "admin")]
Follower = Annotated[Principal, writer()]


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


class QuestionEditIn(BaseModel):
    """An asker's edit: a new title and/or body (topics and place stay as asked). Only the
    fields sent change; neither can be removed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str | None = Field(None, min_length=10, max_length=300, description="never null")
    body: str | None = Field(None, min_length=1, max_length=10_000, description="never null")

    @field_validator("title", "body", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be removed: send the new text, or leave it out")
        return value

    @model_validator(mode="after")
    def _something_to_change(self) -> QuestionEditIn:
        if not self.model_fields_set:
            raise ValueError("nothing to change: send a title and/or a body")
        return self


class AcceptIn(BaseModel):
    """The asker's pick: the answer most helpful to them."""

    model_config = ConfigDict(extra="forbid")

    answer_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")


#: How the questions service layer's refusals read over HTTP.
STATUSES: dict[type[DomainError], int] = {
    UnknownSlugs: 422,
    UnknownLocation: 422,
    BlankQuestion: 422,
    IdempotencyKeyReused: 422,
    BadCursor: 400,
    QuestionNotFound: 404,
    NotYourQuestion: 403,
    AnswerNotOnPage: 404,
    QuestionAnswered: 409,
    EditConflict: 409,
    FollowConflict: 409,
}


def questions_service(request: Request) -> QuestionsService:
    """The questions service layer this app was built with."""
    svc: QuestionsService = request.app.state.service
    return svc


def post_question_command(
    payload: QuestionIn, user: Principal, idempotency_key: str | None
) -> PostQuestion:
    """The command a POST /questions asks for."""
    loc = payload.location
    return PostQuestion(
        asker_id=user.sub,
        asker_name=user.name,
        asker_role=user.role,
        title=payload.title,
        body=payload.body,
        topics=tuple(payload.topics),
        specialties=tuple(payload.specialties) if payload.specialties is not None else None,
        location=loc.query() if loc else None,
        anonymous=payload.anonymous,
        idempotency_key=idempotency_key,
    )


async def _question_args(request: Request) -> dict[str, Any] | None:
    """post_question's arguments for a well-formed request (else FastAPI validates it)."""
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None and len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
        return None
    payload = await json_body(request, QuestionIn)
    if payload is None:
        return None
    user = await admit_asker(request, await require_user(request))
    return {
        "payload": payload,
        "request": request,
        "user": user,
        "idempotency_key": idempotency_key,
    }


@lean_route(router, "POST", "/questions", _question_args, status_code=201, summary="Ask a question")
async def post_question(
    payload: QuestionIn, request: Request, user: Asker, idempotency_key: IdempotencyKey = None
) -> Response:
    """Store the question and publish question-posted in one atomic step."""
    # The most written route of this service: a lean route (arguments from _question_args).
    command = post_question_command(payload, user, idempotency_key)
    reply = await questions_service(request).post_question(command)
    # The JSON JSONResponse renders (compact, UTF-8), by pydantic-core's faster encoder.
    return JSONBytes(to_json(reply), 201)


#: The page is the same for every reader: any cache may keep it, and asks again each time
#: (its ETag makes the repeat a 304 without a body).
PAGE_CACHE_CONTROL = "public, no-cache"
#: A signed-in reader's page is theirs alone.
PRIVATE_CACHE_CONTROL = "private, no-store"


#: The longest If-None-Match taken (a client naming many ETags).
IF_NONE_MATCH_MAX = 1024


async def _page_args(request: Request) -> dict[str, Any] | None:
    """get_question's arguments for a well-formed request (else FastAPI validates it)."""
    question_id = request.path_params["question_id"]
    if_none_match = request.headers.get("if-none-match")
    if not is_resource_id(question_id) or (
        if_none_match is not None and len(if_none_match) > IF_NONE_MATCH_MAX
    ):
        return None
    return {"question_id": question_id, "request": request, "if_none_match": if_none_match}


@lean_route(
    router,
    "GET",
    "/questions/{question_id}",
    _page_args,
    summary="The question page",
    responses={
        200: {"content": {"application/json": {"schema": {"type": "object"}}}},
        304: {"description": "Not modified: If-None-Match names the current ETag"},
    },
)
async def get_question(
    question_id: ResourceId,
    request: Request,
    if_none_match: Annotated[str | None, Header(max_length=IF_NONE_MATCH_MAX)] = None,
) -> Response:
    """The question with its answers ranked best first, answer count and disclaimer.

    `follower_count` always. Anonymous readers get the page everyone shares, with an
    ETag: a repeat with If-None-Match naming it gets 304 and no body, and the read counts
    against their address's limit in the page's own round trip. A signed-in reader's
    page also says whether they follow it (`following`), so no cache keeps it.
    """
    # The most read route: a lean route (its arguments from _page_args), and its one
    # dependency called here, not through Depends.
    read = await read_to_count(request)
    service = questions_service(request)
    if read is None and (reader := await optional_user(request)) is not None:
        page = await service.page(question_id, reader.sub)
        return JSONResponse(page, headers={"Cache-Control": PRIVATE_CACHE_CONTROL})
    view = await service.page_view(question_id, if_none_match, read)
    headers = {"ETag": view.etag, "Cache-Control": PAGE_CACHE_CONTROL}
    if view.body is None:
        return Response(status_code=304, headers=headers)
    return Response(view.body, media_type="application/json", headers=headers)


@router.patch("/questions/{question_id}", summary="Edit one's question (until answered)")
async def edit_question(
    question_id: ResourceId, payload: QuestionEditIn, request: Request, user: Editor
) -> dict[str, Any]:
    """Change the title and/or body; 409 once the question has an answer."""
    return await questions_service(request).edit_question(
        question_id, user.sub, payload.title, payload.body
    )


@router.put("/questions/{question_id}/accepted-answer", summary="The asker's pick")
async def accept_answer(
    question_id: ResourceId, payload: AcceptIn, request: Request, user: Editor
) -> dict[str, Any]:
    """Mark one answer "most helpful to me"; a new pick replaces the old. Returns the page."""
    return await questions_service(request).accept_answer(question_id, user.sub, payload.answer_id)


@router.put("/questions/{question_id}/follow", summary="Follow a question")
async def follow_question(
    question_id: ResourceId, request: Request, user: Follower
) -> dict[str, Any]:
    """Hear of its new answers in one's inbox (idempotent). The asker follows from the start."""
    return await questions_service(request).set_following(question_id, user.sub, True)


@router.delete("/questions/{question_id}/follow", summary="Stop following a question")
async def unfollow_question(
    question_id: ResourceId, request: Request, user: Follower
) -> dict[str, Any]:
    """Hear no more of its new answers (idempotent); the asker may unfollow too."""
    return await questions_service(request).set_following(question_id, user.sub, False)


@router.get("/questions/{question_id}/revisions", summary="A question's revisions")
async def question_revisions(
    question_id: ResourceId, request: Request, _reader: AnyReader
) -> dict[str, Any]:
    """Every kept title and body of the question, oldest first."""
    return await questions_service(request).revisions_of(question_id)


@router.get("/questions", summary="List questions, newest first")
async def list_questions(
    request: Request,
    _reader: AnyReader,
    topic: Annotated[str | None, Query(max_length=80)] = None,
    specialty: Annotated[str | None, Query(max_length=80)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Questions filtered by topic and/or specialty, with an opaque cursor.

    Each item carries `answer_count`, the answers its page shows (hidden ones left out).
    """
    return await questions_service(request).list_questions(topic, specialty, limit, cursor)


@router.get("/questions/{question_id}/related", summary="Related questions")
async def related_questions(
    question_id: ResourceId,
    request: Request,
    _reader: AnyReader,
    limit: Annotated[int, Query(ge=1, le=20)] = 5,
) -> dict[str, Any]:
    """Questions sharing topics (and title words) with this one, most related first."""
    items = await questions_service(request).related(question_id, limit)
    return {"question_id": question_id, "items": items}


@router.get("/taxonomy", summary="Specialties (with NUCC codes) and topics")
async def get_taxonomy() -> dict[str, list[dict[str, Any]]]:
    """The controlled vocabulary used for matching."""
    return taxonomy.as_dict()
