"""Redis persistence of the votes service (all keys share one hash slot tag).

Keys (``T`` is ``runtime.tag``, the slot of ``askdoc.vote-cast``):

* ``T:answer:{aid}``: projection of an answer: hash ``question_id``, ``doctor_id``.
* ``T:votes:{aid}``: hash voter id -> 1 or -1 (a retracted vote is removed).
* ``T:tally:{aid}``: hash ``helpful``, ``unhelpful``, ``tally_version``.
* ``T:answer:{aid}:moderation`` and ``T:q:{qid}:moderation``: ``hidden`` (0/1) and
  ``version`` of the latest moderation decision on the answer or the question (from
  moderation-decided; newest version wins). A hidden answer, or any answer of a hidden
  question, takes no vote and shows no tally.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared import streams
from shared.atomic import Committer, Txn
from shared.events import ItemKind, VoteCast
from shared.lua import script
from shared.ratelimit import WriteLimit
from shared.redis import RedisClient


@dataclass(frozen=True)
class VoteOutcome:
    """What a vote did to an answer's tally."""

    changed: bool
    helpful: int
    unhelpful: int
    previous: int
    tally_version: int
    entry_id: str | None
    #: Set when the voter was over their write limit: seconds until it lifts (no vote).
    limited_for_s: int | None = None


@dataclass(frozen=True)
class AnswerRef:
    """What the votes service knows of an answer."""

    question_id: str
    doctor_id: str


#: How many answers' projections a votes process keeps in memory (see VoteStore.answer).
KNOWN_ANSWERS = 50_000


class VoteStore:
    """Votes, tallies and the projection of answers."""

    def __init__(self, redis: RedisClient, committer: Committer, tag: str, maxlen: int) -> None:
        self.redis = redis
        self.committer = committer
        self.tag = tag
        self.maxlen = maxlen
        # An answer's question and author never change once projected (add_answer writes
        # the same fields every time), so a vote on a known answer needs no round trip to
        # look them up. Unknown answers are not remembered: they may appear any moment.
        self._known: dict[str, AnswerRef] = {}
        self._cast = redis.register_script(script("services.votes", "cast_vote.lua"))

    def _answer(self, aid: str) -> str:
        return f"{self.tag}:answer:{aid}"

    def _votes(self, aid: str) -> str:
        return f"{self.tag}:votes:{aid}"

    def _tally(self, aid: str) -> str:
        return f"{self.tag}:tally:{aid}"

    def _moderation(self, item_id: str, kind: ItemKind) -> str:
        return f"{self.tag}:{'answer' if kind == 'answer' else 'q'}:{item_id}:moderation"

    async def cast(
        self, template: VoteCast, limit: WriteLimit | None = None, voter_role: str = ""
    ) -> VoteOutcome | None:
        """Apply `template.value` for its voter and publish the VoteCast, atomically.

        The rule is domain.apply_vote, applied inside Redis by cast_vote.lua. The
        template's counts, previous value and version are placeholders the script fills
        in; nothing is written or published when the vote is unchanged. None, with
        nothing written, when the answer or its question is hidden. With `limit`, the
        same call counts the vote against the voter's write limit (after the hidden check).
        """
        aid = template.answer_id
        keys = [
            self._votes(aid),
            self._tally(aid),
            streams.VOTE_CAST,
            self._moderation(aid, "answer"),
            self._moderation(template.question_id, "question"),
        ]
        args: list[str | int] = [template.voter_id, template.value, template.model_dump_json()]
        if limit is not None and limit.applies_to(voter_role):
            keys.append(limit.key(template.voter_id))
            args += [limit.writes, limit.window_s]
        reply = await self._cast(keys=keys, args=args)
        if reply[0] == "limited":
            return VoteOutcome(False, 0, 0, 0, 0, None, limited_for_s=int(reply[1]))
        if int(reply[0]) < 0:
            return None
        changed, helpful, unhelpful, previous, version, entry_id = reply
        return VoteOutcome(
            bool(int(changed)),
            int(helpful),
            int(unhelpful),
            int(previous),
            int(version),
            entry_id or None,
        )

    async def answer(self, aid: str) -> AnswerRef | None:
        """The projected answer, or None if unknown here."""
        known = self._known.get(aid)
        if known is not None:
            return known
        question_id, doctor_id = await self.redis.hmget(
            self._answer(aid), "question_id", "doctor_id"
        )
        if question_id is None or doctor_id is None:
            return None
        if len(self._known) >= KNOWN_ANSWERS:
            self._known.pop(next(iter(self._known)))  # the oldest remembered goes first
        ref = self._known[aid] = AnswerRef(question_id, doctor_id)
        return ref

    async def tally(
        self, aid: str, question_id: str, voter_id: str | None
    ) -> tuple[int, int, int | None] | None:
        """(helpful, unhelpful, the voter's vote: 1, -1, 0, or None without a voter);
        None when the answer or its question is hidden."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self._moderation(aid, "answer"), "hidden")
        pipe.hget(self._moderation(question_id, "question"), "hidden")
        pipe.hmget(self._tally(aid), "helpful", "unhelpful")
        if voter_id is not None:
            pipe.hget(self._votes(aid), voter_id)
        replies = await pipe.execute()
        if "1" in replies[:2]:
            return None
        helpful, unhelpful = replies[2]
        mine = int(replies[3] or 0) if voter_id is not None else None
        return int(helpful or 0), int(unhelpful or 0), mine

    async def set_hidden(self, item_id: str, version: int, hidden: bool, kind: ItemKind) -> None:
        """Record a moderation decision on an answer or a question; an older one never wins."""
        key = self._moderation(item_id, kind)
        await self.committer.commit(
            Txn().set_if_newer(key, "version", version, {"hidden": int(hidden)})
        )

    async def add_answer(self, aid: str, question_id: str, doctor_id: str) -> None:
        """Project an answer (idempotent: the same fields every time)."""
        await self.redis.hset(
            self._answer(aid), mapping={"question_id": question_id, "doctor_id": doctor_id}
        )
