"""Redis persistence of the answers service (all keys share one hash slot tag).

Keys (``T`` is ``runtime.tag``, the slot of ``askdoc.answer-posted``):

* ``T:q:{qid}``: projection of a question (JSON with its ``asker_id``); written once.
* ``T:q:{qid}:answers``: sorted set of the question's answer ids, scored by creation ms.
* ``T:q:{qid}:by:{doctor_id}``: the answer id of a doctor's one answer to a question.
* ``T:answer:{aid}``: an answer as JSON.
* ``T:answer:{aid}:revisions``: list of the answer's revisions (JSON), oldest first;
  written at the first edit (with the original) and at every edit after.
* ``T:answer:{aid}:moderation``: ``hidden`` (0/1) and ``version`` of the latest
  moderation decision on the answer (from moderation-decided; newest version wins).
* ``T:doctor:{doctor_id}``: projection of a doctor's card, ``card`` (JSON) and
  ``profile_version`` (newest wins).
* ``T:idem:...``: Idempotency-Key replies (see ``shared.idempotency``).
"""

from __future__ import annotations

import json
from typing import Any

from shared import idempotency
from shared.atomic import CommitResult, Committer, Txn
from shared.events import AnswerEdited, AnswerPosted, ItemKind
from shared.idempotency import ReplyRecord
from shared.redis import RedisClient

QUESTION_GUARD = "question"
UNIQUE_GUARD = "one_answer_per_doctor"
REVISION_GUARD = "revision"


class AnswerStore:
    """Answers, and the answers service's projections of questions and doctors."""

    def __init__(self, redis: RedisClient, committer: Committer, tag: str, maxlen: int) -> None:
        self.redis = redis
        self.committer = committer
        self.tag = tag
        self.maxlen = maxlen
        #: How long a revision marker guards against a racing edit of the same revision.
        self.revision_ttl_s = 3600

    def _question(self, qid: str) -> str:
        return f"{self.tag}:q:{qid}"

    def _answers(self, qid: str) -> str:
        return f"{self.tag}:q:{qid}:answers"

    def _by_doctor(self, qid: str, doctor_id: str) -> str:
        return f"{self.tag}:q:{qid}:by:{doctor_id}"

    def _answer(self, aid: str) -> str:
        return f"{self.tag}:answer:{aid}"

    def _revisions(self, aid: str) -> str:
        return f"{self.tag}:answer:{aid}:revisions"

    def _moderation(self, item_id: str, kind: ItemKind = "answer") -> str:
        # a hidden question's answers are refused too: its decisions are kept beside it
        return f"{self.tag}:{'answer' if kind == 'answer' else 'q'}:{item_id}:moderation"

    def _doctor(self, doctor_id: str) -> str:
        return f"{self.tag}:doctor:{doctor_id}"

    async def post(
        self,
        answer: dict[str, Any],
        created_ms: int,
        event: AnswerPosted,
        reply: ReplyRecord | None,
    ) -> CommitResult:
        """Store an answer and publish its event in one atomic step.

        Guards, in order: the Idempotency-Key (a repeat replays), the question (must be
        known), one answer per doctor per question (`found` is the existing answer id).
        """
        qid = answer["question_id"]
        txn = Txn()
        if reply is not None:
            txn.absent(idempotency.GUARD, reply.key, reply.value, reply.ttl_s)
        txn.present(QUESTION_GUARD, self._question(qid))
        txn.absent(UNIQUE_GUARD, self._by_doctor(qid, answer["doctor"]["id"]), answer["id"])
        txn.call("SET", self._answer(answer["id"]), json.dumps(answer))
        txn.call("ZADD", self._answers(qid), created_ms, answer["id"])
        return await self.committer.commit(txn.publish(event, self.maxlen))

    async def edit(
        self, answer: dict[str, Any], revisions: list[dict[str, Any]], event: AnswerEdited
    ) -> CommitResult:
        """Store an edited answer, append its revision(s) and publish answer-edited atomically.

        The guard is the revision number: an edit racing another one for the same
        revision loses (`failed_guard` is ``revision``) instead of overwriting it.
        """
        txn = Txn()
        marker = f"{self._answer(answer['id'])}:rev:{answer['revision']}"
        txn.absent(REVISION_GUARD, marker, "1", self.revision_ttl_s)
        txn.call("SET", self._answer(answer["id"]), json.dumps(answer))
        for revision in revisions:
            txn.call("RPUSH", self._revisions(answer["id"]), json.dumps(revision))
        return await self.committer.commit(txn.publish(event, self.maxlen))

    async def revisions(self, aid: str) -> list[dict[str, Any]]:
        """An answer's stored revisions, oldest first (empty if never edited)."""
        return [json.loads(r) for r in await self.redis.lrange(self._revisions(aid), 0, -1)]

    async def get(self, aid: str) -> dict[str, Any] | None:
        """A stored answer (its doctor's card showing their verification now), or None."""
        raw = await self.redis.get(self._answer(aid))
        if not raw:
            return None
        [answer] = await self._verified_now([json.loads(raw)])
        return answer

    async def answers_of(self, qid: str) -> list[dict[str, Any]] | None:
        """A question's shown answers, oldest first; None if the question is unknown."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(self._question(qid))
        pipe.zrange(self._answers(qid), 0, -1)
        exists, ids = await pipe.execute()
        if not exists:
            return None
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        pipe.mget([self._answer(a) for a in ids])
        for aid in ids:
            pipe.hget(self._moderation(aid), "hidden")
        raws, *hidden = await pipe.execute()
        answers = [json.loads(r) for r, h in zip(raws, hidden, strict=True) if r and h != "1"]
        return await self._verified_now(answers)

    async def _verified_now(self, answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The answers with each doctor's card showing their verification now, not when they
        answered: a suspended doctor's answers lose the mark (no card known: as answered)."""
        doctors = list(dict.fromkeys(a["doctor"]["id"] for a in answers))
        if not doctors:
            return answers
        pipe = self.redis.pipeline(transaction=False)
        for doctor_id in doctors:
            pipe.hget(self._doctor(doctor_id), "card")
        cards = dict(zip(doctors, await pipe.execute(), strict=True))
        for answer in answers:
            card = cards[answer["doctor"]["id"]]
            if card is not None:
                answer["doctor"]["verified"] = bool(json.loads(card).get("verified"))
        return answers

    async def is_hidden(self, item_id: str, kind: ItemKind = "answer") -> bool:
        """Whether moderators hid the answer (or the question)."""
        return bool(await self.redis.hget(self._moderation(item_id, kind), "hidden") == "1")

    async def set_hidden(
        self, item_id: str, version: int, hidden: bool, kind: ItemKind = "answer"
    ) -> None:
        """Record a moderation decision on an answer or a question; an older one never wins."""
        key = self._moderation(item_id, kind)
        txn = Txn().set_if_newer(key, "version", version, {"hidden": int(hidden)})
        await self.committer.commit(txn)

    async def question_known(self, qid: str) -> bool:
        """Whether the question has reached this service's projection."""
        return bool(await self.redis.exists(self._question(qid)))

    async def doctor_card(self, doctor_id: str) -> dict[str, Any] | None:
        """A doctor's projected public card, or None if not in the directory."""
        raw = await self.redis.hget(self._doctor(doctor_id), "card")
        return json.loads(raw) if raw else None

    async def add_question(self, qid: str, asker_id: str) -> None:
        """Project a question (idempotent: a question is written once and never changes)."""
        await self.redis.set(self._question(qid), json.dumps({"asker_id": asker_id}), nx=True)

    async def set_doctor(self, doctor_id: str, version: int, card: dict[str, Any]) -> None:
        """Project a doctor's card; an older profile version never overwrites a newer one."""
        txn = Txn().set_if_newer(
            self._doctor(doctor_id), "profile_version", version, {"card": json.dumps(card)}
        )
        await self.committer.commit(txn)
