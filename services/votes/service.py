"""Use cases of the votes service, called by the HTTP routes and event handlers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from shared.errors import Forbidden, NotFound
from shared.events import AnswerPosted, ItemKind, ModerationDecided, VoteCast
from shared.logging import current_correlation_id, get_logger
from shared.metrics import EVENTS_PUBLISHED
from shared.ratelimit import WriteLimit

from .domain import Vote
from .store import AnswerRef, VoteOutcome

log = get_logger("askdoc.votes")

SERVICE = "votes"


@dataclass(frozen=True)
class CastVote:
    """A voter casts (1 or -1) or retracts (0) their vote on an answer."""

    answer_id: str
    voter_id: str
    value: Vote
    #: The voter's role: an admin's votes do not count against the write limit.
    voter_role: str = ""


class AnswerNotFound(NotFound):
    """The answer is not (yet) known to the votes service, or moderators hid it (or its
    question): a hidden item is not found, here as on its page."""


class OwnAnswer(Forbidden):
    """A doctor may not vote on their own answer."""

    code = "own_answer"


class VoteStorePort(Protocol):
    """What the votes service layer needs from its store."""

    async def cast(
        self, template: VoteCast, limit: WriteLimit | None = None, voter_role: str = ""
    ) -> VoteOutcome | None:
        """Apply the template's vote and publish it, atomically; None if hidden. Counted
        against `limit` for the voter first (nothing happens when they are over it)."""
        ...

    async def answer(self, aid: str) -> AnswerRef | None:
        """The projected answer, or None."""
        ...

    async def tally(
        self, aid: str, question_id: str, voter_id: str | None
    ) -> tuple[int, int, int | None] | None:
        """(helpful, unhelpful, the voter's vote); None if hidden."""
        ...

    async def add_answer(self, aid: str, question_id: str, doctor_id: str) -> None:
        """Project an answer."""
        ...

    async def set_hidden(self, item_id: str, version: int, hidden: bool, kind: ItemKind) -> None:
        """Record a moderation decision on an answer or a question (newest version wins)."""
        ...


class VotesService:
    """One vote per (answer, voter); tallies; the projection of answers."""

    def __init__(self, store: VoteStorePort, limit: WriteLimit | None = None) -> None:
        self.store = store
        #: The voters' write limit, counted in the vote's own script (None: no limit).
        self.limit = limit

    async def _answer(self, aid: str) -> AnswerRef:
        ref = await self.store.answer(aid)
        if ref is None:
            raise AnswerNotFound(
                f"no answer {aid!r} (an answer just posted can take a moment to appear here)"
            )
        return ref

    @staticmethod
    def _hidden(aid: str) -> AnswerNotFound:
        return AnswerNotFound(f"no answer {aid!r}")

    async def cast_vote(self, command: CastVote) -> dict[str, Any]:
        """Cast, change (1 or -1) or retract (0) a vote; the answer's tally.

        Repeating the same vote changes nothing and publishes nothing.
        """
        aid = command.answer_id
        ref = await self._answer(aid)
        if ref.doctor_id == command.voter_id:
            raise OwnAnswer("you cannot vote on your own answer")
        # Counts, previous value and version are placeholders: the script fills them in.
        template = VoteCast(
            correlation_id=current_correlation_id(),
            producer=SERVICE,
            answer_id=aid,
            question_id=ref.question_id,
            doctor_id=ref.doctor_id,
            voter_id=command.voter_id,
            value=command.value,
            previous_value=0,
            helpful=0,
            unhelpful=0,
            tally_version=1,
        )
        outcome = await self.store.cast(template, self.limit, command.voter_role)
        if outcome is None:
            raise self._hidden(aid)
        if outcome.limited_for_s is not None and self.limit is not None:
            raise self.limit.exceeded(outcome.limited_for_s)
        if outcome.changed:
            EVENTS_PUBLISHED.labels(SERVICE, VoteCast.stream).inc()
        log.info(
            "vote_cast",
            answer_id=aid,
            value=command.value,
            previous_value=outcome.previous,
            changed=outcome.changed,
            tally_version=outcome.tally_version,
        )
        return _tally(aid, outcome.helpful, outcome.unhelpful, command.value)

    async def tally(self, aid: str, voter_id: str | None) -> dict[str, Any]:
        """An answer's tally, with the voter's own vote when one is given."""
        ref = await self._answer(aid)
        found = await self.store.tally(aid, ref.question_id, voter_id)
        if found is None:
            raise self._hidden(aid)
        helpful, unhelpful, mine = found
        return _tally(aid, helpful, unhelpful, mine)

    async def on_answer_posted(self, event: AnswerPosted) -> None:
        """Know the answer, its question and its author, so it can be voted on."""
        await self.store.add_answer(event.answer_id, event.question_id, event.doctor.id)
        log.info("answer_projected", answer_id=event.answer_id, question_id=event.question_id)

    async def on_moderation_decided(self, event: ModerationDecided) -> None:
        """Refuse votes on a hidden answer, or on the answers of a hidden question; a
        restore brings voting back, the tally as it was."""
        hidden = event.decision == "hidden"
        kind = event.item_kind
        await self.store.set_hidden(event.item_id, event.decision_version, hidden, kind)
        log.info("item_moderated", kind=kind, item_id=event.item_id, hidden=hidden)


def _tally(aid: str, helpful: int, unhelpful: int, your_vote: int | None) -> dict[str, Any]:
    return {"answer_id": aid, "helpful": helpful, "unhelpful": unhelpful, "your_vote": your_vote}
