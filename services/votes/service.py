"""Use cases of the votes service, called by the HTTP routes and event handlers."""

from __future__ import annotations

from typing import Any

from shared.auth import Principal
from shared.errors import ApiError
from shared.events import AnswerPosted, VoteCast
from shared.logging import current_correlation_id, get_logger
from shared.metrics import EVENTS_PUBLISHED

from .domain import Vote
from .store import AnswerRef, VoteStore

log = get_logger("askdoc.votes")

SERVICE = "votes"


class VotesService:
    """One vote per (answer, voter); tallies; the projection of answers."""

    def __init__(self, store: VoteStore) -> None:
        self.store = store

    async def _answer(self, aid: str) -> AnswerRef:
        ref = await self.store.answer(aid)
        if ref is None:
            raise ApiError(
                404,
                "not_found",
                f"no answer {aid!r} (an answer just posted can take a moment to appear here)",
            )
        return ref

    async def vote(self, user: Principal, aid: str, value: Vote) -> dict[str, Any]:
        """Cast, change (1 or -1) or retract (0) the user's vote; the answer's tally.

        Repeating the same vote changes nothing and publishes nothing.
        """
        ref = await self._answer(aid)
        if ref.doctor_id == user.sub:
            raise ApiError(403, "own_answer", "you cannot vote on your own answer")
        # Counts, previous value and version are placeholders: the script fills them in.
        template = VoteCast(
            correlation_id=current_correlation_id(),
            producer=SERVICE,
            answer_id=aid,
            question_id=ref.question_id,
            doctor_id=ref.doctor_id,
            voter_id=user.sub,
            value=value,
            previous_value=0,
            helpful=0,
            unhelpful=0,
            tally_version=1,
        )
        outcome = await self.store.cast(template)
        if outcome.changed:
            EVENTS_PUBLISHED.labels(SERVICE, VoteCast.stream).inc()
        log.info(
            "vote_cast",
            answer_id=aid,
            value=value,
            previous_value=outcome.previous,
            changed=outcome.changed,
            tally_version=outcome.tally_version,
        )
        return _tally(aid, outcome.helpful, outcome.unhelpful, value)

    async def tally(self, user: Principal | None, aid: str) -> dict[str, Any]:
        """An answer's tally, with the user's own vote when signed in."""
        await self._answer(aid)
        helpful, unhelpful, mine = await self.store.tally(aid, user.sub if user else None)
        return _tally(aid, helpful, unhelpful, mine)

    async def on_answer_posted(self, event: AnswerPosted) -> None:
        """Know the answer, its question and its author, so it can be voted on."""
        await self.store.add_answer(event.answer_id, event.question_id, event.doctor.id)
        log.info("answer_projected", answer_id=event.answer_id, question_id=event.question_id)


def _tally(aid: str, helpful: int, unhelpful: int, your_vote: int | None) -> dict[str, Any]:
    return {"answer_id": aid, "helpful": helpful, "unhelpful": unhelpful, "your_vote": your_vote}
