"""HTTP routes of the votes service."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.auth import Principal
from shared.errors import DomainError
from shared.http import AnyReader, writer
from shared.ids import ResourceId

from .domain import Vote
from .service import AnswerNotFound, CastVote, OwnAnswer, VotesService

router = APIRouter(tags=["votes"])

Voter = Annotated[Principal, writer()]
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


@router.put("/answers/{answer_id}/vote", summary="Vote an answer helpful or unhelpful")
async def put_vote(
    answer_id: AnswerId, payload: VoteIn, request: Request, user: Voter
) -> dict[str, Any]:
    """One vote per user; none on one's own answer. Returns the answer's tally."""
    command = CastVote(answer_id=answer_id, voter_id=user.sub, value=payload.value)
    return await votes_service(request).cast_vote(command)


@router.get("/answers/{answer_id}/votes", summary="An answer's tally")
async def get_votes(answer_id: AnswerId, request: Request, user: AnyReader) -> dict[str, Any]:
    """Helpful and unhelpful counts; `your_vote` is the caller's vote, null when signed out."""
    return await votes_service(request).tally(answer_id, user.sub if user else None)
