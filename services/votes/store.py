"""Redis persistence of the votes service (all keys share one hash slot tag).

Keys (``T`` is ``runtime.tag``, the slot of ``askdoc.vote-cast``):

* ``T:answer:{aid}``: projection of an answer: hash ``question_id``, ``doctor_id``.
* ``T:votes:{aid}``: hash voter id -> 1 or -1 (a retracted vote is removed).
* ``T:tally:{aid}``: hash ``helpful``, ``unhelpful``, ``tally_version``.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared import streams
from shared.events import VoteCast
from shared.redis import RedisClient

# KEYS: votes hash, tally hash, the vote-cast stream (its name is the tag's slot).
# ARGV: voter id, new value, stream MAXLEN, the VoteCast as JSON with placeholder counts.
# Mirrors domain.apply_vote; reading the previous vote, moving the counts, bumping the
# version and the XADD happen in one script, so concurrent votes can neither lose an
# update nor publish a tally that was never stored.
CAST_VOTE = """
local voter = ARGV[1]
local new = tonumber(ARGV[2])
local previous = tonumber(redis.call('HGET', KEYS[1], voter) or '0')
local helpful = tonumber(redis.call('HGET', KEYS[2], 'helpful') or '0')
local unhelpful = tonumber(redis.call('HGET', KEYS[2], 'unhelpful') or '0')
local version = tonumber(redis.call('HGET', KEYS[2], 'tally_version') or '0')
if previous == new then
  return {0, helpful, unhelpful, previous, version, ''}
end
if previous == 1 then helpful = helpful - 1 elseif previous == -1 then unhelpful = unhelpful - 1 end
if new == 1 then helpful = helpful + 1 elseif new == -1 then unhelpful = unhelpful + 1 end
if helpful < 0 then helpful = 0 end
if unhelpful < 0 then unhelpful = 0 end
version = version + 1
if new == 0 then
  redis.call('HDEL', KEYS[1], voter)
else
  redis.call('HSET', KEYS[1], voter, new)
end
redis.call('HSET', KEYS[2], 'helpful', helpful, 'unhelpful', unhelpful, 'tally_version', version)
-- cjson writes '/' as '\\/': still valid JSON, and it reads back the same.
local event = cjson.decode(ARGV[4])
event['helpful'] = helpful
event['unhelpful'] = unhelpful
event['previous_value'] = previous
event['tally_version'] = version
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', '__data__', cjson.encode(event))
return {1, helpful, unhelpful, previous, version, id}
"""


@dataclass(frozen=True)
class VoteOutcome:
    """What a vote did to an answer's tally."""

    changed: bool
    helpful: int
    unhelpful: int
    previous: int
    tally_version: int
    entry_id: str | None


@dataclass(frozen=True)
class AnswerRef:
    """What the votes service knows of an answer."""

    question_id: str
    doctor_id: str


class VoteStore:
    """Votes, tallies and the projection of answers."""

    def __init__(self, redis: RedisClient, tag: str, maxlen: int) -> None:
        self.redis = redis
        self.tag = tag
        self.maxlen = maxlen
        self._cast = redis.register_script(CAST_VOTE)

    def _answer(self, aid: str) -> str:
        return f"{self.tag}:answer:{aid}"

    def _votes(self, aid: str) -> str:
        return f"{self.tag}:votes:{aid}"

    def _tally(self, aid: str) -> str:
        return f"{self.tag}:tally:{aid}"

    async def cast(self, template: VoteCast) -> VoteOutcome:
        """Apply `template.value` for its voter and publish the VoteCast, atomically.

        The template's counts, previous value and version are placeholders the script
        fills in; nothing is written or published when the vote is unchanged.
        """
        aid = template.answer_id
        reply = await self._cast(
            keys=[self._votes(aid), self._tally(aid), streams.VOTE_CAST],
            args=[template.voter_id, template.value, self.maxlen, template.model_dump_json()],
        )
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
        question_id, doctor_id = await self.redis.hmget(
            self._answer(aid), "question_id", "doctor_id"
        )
        if question_id is None or doctor_id is None:
            return None
        return AnswerRef(question_id, doctor_id)

    async def tally(self, aid: str, voter_id: str | None) -> tuple[int, int, int | None]:
        """(helpful, unhelpful, the voter's vote: 1, -1, 0, or None without a voter)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(self._tally(aid), "helpful", "unhelpful")
        if voter_id is not None:
            pipe.hget(self._votes(aid), voter_id)
        replies = await pipe.execute()
        helpful, unhelpful = replies[0]
        mine = int(replies[1] or 0) if voter_id is not None else None
        return int(helpful or 0), int(unhelpful or 0), mine

    async def add_answer(self, aid: str, question_id: str, doctor_id: str) -> None:
        """Project an answer (idempotent: the same fields every time)."""
        await self.redis.hset(
            self._answer(aid), mapping={"question_id": question_id, "doctor_id": doctor_id}
        )
