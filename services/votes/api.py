"""HTTP routes of the votes service."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.auth import Principal, require_user
from shared.errors import DomainError
from shared.http import AnyReader, json_body, lean_route, writer_check
from shared.ids import ResourceId, is_resource_id

from .domain import Vote
from .service import AnswerNotFound, CastVote, OwnAnswer, VotesService

router = APIRouter(tags=["votes"])

#: Any signed-in user; the write limit is counted in the vote's own script.
admit_voter = writer_check(limit_in_commit=True)
Voter = Annotated[Principal, Depends(admit_voter)]
AnswerId = ResourceId


class VoteIn(BaseModel):
    """A vote: 1 helpful, -1 unhelpful, 0 to retract."""

    model_config = ConfigDict(extra="forbid")

    value: Vote = Field(description="1 helpful, -1 unhelpful, 0 retracts the vote")

    @field_validator("value", mode="before")
    @classmethod
    def _integer_only(cls, value: object) -> object:
        # Literal[1, 0, -1] alone admits true and 1.0, which are not votes.
        if type(value) is not int:
            raise ValueError("must be the integer 1, 0 or -1")
        return value


#: How the votes service layer's refusals read over HTTP.
STATUSES: dict[type[DomainError], int] = {AnswerNotFound: 404, OwnAnswer: 403}


def votes_service(request: Request) -> VotesService:
    """The votes service layer this app was built with."""
    svc: VotesService = request.app.state.service
    return svc


async def _vote_args(request: Request) -> dict[str, Any] | None:
    """put_vote's arguments for a well-formed request (else FastAPI validates it)."""
    answer_id = request.path_params["answer_id"]
    if not is_resource_id(answer_id):
        return None
    payload = await json_body(request, VoteIn)
    if payload is None:
        return None
    user = await admit_voter(request, await require_user(request))
    return {"answer_id": answer_id, "payload": payload, "request": request, "user": user}


@lean_route(
    router,
    "PUT",
    "/answers/{answer_id}/vote",
    _vote_args,
    summary="Vote an answer helpful or unhelpful",
    response_model=dict[str, Any],
)
async def put_vote(
    answer_id: AnswerId, payload: VoteIn, request: Request, user: Voter
) -> JSONResponse:
    """One vote per user; none on one's own answer. Returns the answer's tally."""
    # The most written route: a lean route (its arguments from _vote_args).
    command = CastVote(
        answer_id=answer_id, voter_id=user.sub, value=payload.value, voter_role=user.role
    )
    return JSONResponse(await votes_service(request).cast_vote(command))


@router.get("/answers/{answer_id}/votes", summary="An answer's tally")
async def get_votes(answer_id: AnswerId, request: Request, user: AnyReader) -> dict[str, Any]:
    """Helpful and unhelpful counts; `your_vote` is the caller's vote, null when signed out."""
    return await votes_service(request).tally(answer_id, user.sub if user else None)
