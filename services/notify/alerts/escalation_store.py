"""Redis persistence of escalations: per question state and the due-time index.

Keys share the notification-sent slot (``T``) with the alerts, so the state and the
index move together in one MULTI:

* ``T:esc-due``: questions scored by when their next round is due (epoch ms); the
  escalator reads only the due end of it, never every question.
* ``T:esc:{qid}``: hash of ``question`` (the event, JSON, body left out), ``round`` (the
  last round done), ``answered``, and ``r<N>`` (round N's doctors, frozen on first run).
* ``T:escalating:{qid}``: a short lock, so two replicas never run one round at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.redis import RedisClient


@dataclass(frozen=True)
class EscalationState:
    """Where a question's escalation stands."""

    question: str
    round: int
    answered: bool


class EscalationStore:
    """Escalation state per question and the index of when each is next due."""

    def __init__(self, redis: RedisClient, tag: str, ttl_s: int) -> None:
        self.redis = redis
        self._tag = tag
        self.ttl_s = ttl_s

    @property
    def _due_key(self) -> str:
        return f"{self._tag}:esc-due"

    def _state_key(self, question_id: str) -> str:
        return f"{self._tag}:esc:{question_id}"

    def _lock_key(self, question_id: str) -> str:
        return f"{self._tag}:escalating:{question_id}"

    async def schedule(self, question_id: str, question_json: str, due_ms: int) -> None:
        """Watch a question (idempotent: a redelivery keeps the first due time)."""
        key = self._state_key(question_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(key, "question", question_json)
        pipe.expire(key, self.ttl_s)
        pipe.zadd(self._due_key, {question_id: due_ms}, nx=True)
        await pipe.execute()

    async def stop(self, question_id: str) -> None:
        """The question was answered: no further rounds (idempotent)."""
        key = self._state_key(question_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, "answered", "1")
        pipe.expire(key, self.ttl_s)
        pipe.zrem(self._due_key, question_id)
        await pipe.execute()

    async def due(self, now_ms: int, count: int) -> list[str]:
        """Questions whose next round is due, earliest first."""
        ids: list[str] = await self.redis.zrange(
            self._due_key, "-inf", now_ms, byscore=True, offset=0, num=count
        )
        return ids

    async def state(self, question_id: str) -> EscalationState | None:
        """A question's escalation state, or None when it is not watched."""
        question, done, answered = await self.redis.hmget(
            self._state_key(question_id), "question", "round", "answered"
        )
        if not question:
            return None
        return EscalationState(question, int(done or 0), bool(answered))

    async def rounds(self, question_id: str, upto: int) -> list[str]:
        """The frozen doctors (JSON) of rounds 1..upto that exist."""
        if upto < 1:
            return []
        values = await self.redis.hmget(
            self._state_key(question_id), [f"r{n}" for n in range(1, upto + 1)]
        )
        return [v for v in values if v]

    async def freeze_round(self, question_id: str, number: int, matches_json: str) -> str:
        """Keep a round's doctors unless kept already; the kept ones."""
        key = self._state_key(question_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(key, f"r{number}", matches_json)
        pipe.hget(key, f"r{number}")
        _, kept = await pipe.execute()
        return str(kept)

    async def advance(self, question_id: str, number: int, next_due_ms: int | None) -> None:
        """Record round `number` done; due again at `next_due_ms`, or no more rounds."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self._state_key(question_id), "round", number)
        if next_due_ms is None:
            pipe.zrem(self._due_key, question_id)
        else:
            pipe.zadd(self._due_key, {question_id: next_due_ms}, xx=True)
        await pipe.execute()

    async def drop(self, question_id: str) -> None:
        """Stop looking at a question (answered, forgotten, or out of rounds)."""
        await self.redis.zrem(self._due_key, question_id)

    async def lock(self, question_id: str, ttl_s: int) -> bool:
        """Take the question's escalation lock (False when another replica holds it)."""
        return bool(await self.redis.set(self._lock_key(question_id), 1, nx=True, ex=ttl_s))

    async def unlock(self, question_id: str) -> None:
        """Give the lock back."""
        await self.redis.delete(self._lock_key(question_id))
