"""HTTP routes of moderation: readers flag, admins read the queue and decide."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from shared.auth import Principal, require_role
from shared.errors import DomainError
from shared.events import FlagReason
from shared.http import writer
from shared.ids import ResourceId

from . import domain
from .service import (
    BadQueueCursor,
    DecideItem,
    FlagItem,
    ItemHidden,
    ItemNotFound,
    ItemRef,
    ModerationConflict,
    ModerationService,
    OwnItem,
    UnknownReason,
)

router = APIRouter(tags=["moderation"])

#: Any signed-in user may flag; flags count against the write limit like other writes.
Reporter = Annotated[Principal, writer()]
Moderator = Annotated[Principal, writer("admin")]
Admin = Annotated[Principal, require_role("admin")]


class FlagIn(BaseModel):
    """Why an item should be looked at: a reason category and an optional short note."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: FlagReason
    note: str | None = Field(None, max_length=domain.MAX_NOTE)


class DecisionIn(BaseModel):
    """An admin's decision; the reason category is what the author is told."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["hidden", "restored", "dismissed"] = Field(
        description="hidden or restored (the author is told); dismissed: the flags so far "
        "were judged harmless, the item leaves the open queue, stays shown, nobody is told"
    )
    reason: FlagReason | None = Field(
        None,
        description="Default: the reason of the last decision, else the most flagged one "
        "(none with dismissed)",
    )


#: How moderation's refusals read over HTTP.
STATUSES: dict[type[DomainError], int] = {
    ItemNotFound: 404,
    OwnItem: 403,
    UnknownReason: 422,
    BadQueueCursor: 400,
    ModerationConflict: 409,
    ItemHidden: 409,
}


def moderation(request: Request) -> ModerationService:
    """The moderation service layer this app was built with."""
    svc: ModerationService = request.app.state.moderation
    return svc


@router.put("/questions/{question_id}/flag", summary="Flag a question (one flag per user)")
async def flag_question(
    question_id: ResourceId, payload: FlagIn, request: Request, user: Reporter
) -> dict[str, Any]:
    """Count the caller's flag once; a repeat is no second flag. Not on one's own question."""
    command = FlagItem(user.sub, ItemRef(question_id), payload.reason, payload.note)
    return await moderation(request).flag(command)


@router.put(
    "/questions/{question_id}/answers/{answer_id}/flag", summary="Flag an answer (one per user)"
)
async def flag_answer(
    question_id: ResourceId,
    answer_id: ResourceId,
    payload: FlagIn,
    request: Request,
    user: Reporter,
) -> dict[str, Any]:
    """Count the caller's flag on an answer once; not on one's own answer."""
    command = FlagItem(user.sub, ItemRef(question_id, answer_id), payload.reason, payload.note)
    return await moderation(request).flag(command)


@router.get("/moderation/visibility", summary="The visibility version (long poll)")
async def visibility_version(
    request: Request,
    after: Annotated[int | None, Query(ge=0, description="answer once it is not this")] = None,
    wait_s: Annotated[float, Query(ge=0, le=4)] = 0,
) -> dict[str, int]:
    """A counter every applied hide or restore bumps; with `after`, waits for it to move.

    Whoever keeps pages or listings (the web's caches) drops them when it moves: a
    hidden question leaves every list at once, a restored one comes back.
    """
    return {"version": await moderation(request).visibility_version(after, wait_s)}


@router.get("/moderation/queue", summary="The moderation queue (admins)")
async def moderation_queue(
    request: Request,
    _admin: Admin,
    status: Literal["open", "hidden"] = "open",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,9}$")] = None,
) -> dict[str, Any]:
    """Flagged items with counts per reason, most flagged then oldest first; or hidden ones."""
    return await moderation(request).queue(status, limit, cursor)


@router.put(
    "/moderation/questions/{question_id}",
    summary="Hide, restore or dismiss the flags of a question (admins)",
)
async def decide_question(
    question_id: ResourceId, payload: DecisionIn, request: Request, admin: Moderator
) -> dict[str, Any]:
    """Hidden questions leave their page, listings and related questions; the asker is told.

    Dismissed: the question leaves the open queue and stays shown; nobody is told."""
    command = DecideItem(admin.sub, ItemRef(question_id), payload.decision, payload.reason)
    return await moderation(request).decide(command)


@router.put(
    "/moderation/questions/{question_id}/answers/{answer_id}",
    summary="Hide, restore or dismiss the flags of an answer (admins)",
)
async def decide_answer(
    question_id: ResourceId,
    answer_id: ResourceId,
    payload: DecisionIn,
    request: Request,
    admin: Moderator,
) -> dict[str, Any]:
    """Hidden answers leave the page, the answers listing and the count; the doctor is told."""
    command = DecideItem(
        admin.sub, ItemRef(question_id, answer_id), payload.decision, payload.reason
    )
    return await moderation(request).decide(command)
