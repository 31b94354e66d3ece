"""The matches computed for a question the first time, kept so a redelivery reuses them."""

from __future__ import annotations

from shared.redis import RedisClient


class MatchStore:
    """Frozen matches per question, in the notification-sent slot."""

    def __init__(self, redis: RedisClient, tag: str) -> None:
        self.redis = redis
        self._tag = tag

    def _key(self, question_id: str) -> str:
        return f"{self._tag}:matches:{question_id}"

    async def frozen(self, question_id: str) -> str | None:
        """The matches stored by an earlier delivery of the question (JSON), or None."""
        stored: str | None = await self.redis.get(self._key(question_id))
        return stored

    async def freeze(self, question_id: str, matches_json: str, ttl_s: int) -> str:
        """The question's matches: those stored first win, so a redelivery reuses them."""
        key = self._key(question_id)
        if await self.redis.set(key, matches_json, nx=True, ex=ttl_s):
            return matches_json
        stored: str | None = await self.redis.get(key)
        return stored if stored is not None else matches_json
