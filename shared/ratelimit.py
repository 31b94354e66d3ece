"""The per-user write limit: a fixed window counted in Redis; admins are exempt.

Every write counts through the same `limit` guard of `shared.atomic.Txn`: either inside
the write's own commit (no extra round trip) or in a commit of its own before the write.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from shared.atomic import Committer, Txn
from shared.errors import RateLimited
from shared.settings import Settings

#: The name of the write-limit guard in a commit.
GUARD = "rate_limit"


@dataclass(frozen=True)
class WriteLimit:
    """At most `writes` per user in each window of `window_s` seconds, per service `tag`."""

    tag: str
    writes: int
    window_s: int

    @classmethod
    def of(cls, tag: str, settings: Settings) -> WriteLimit:
        """The write limit of the service whose keys carry `tag`, from its settings."""
        return cls(tag, settings.rate_limit_writes, settings.rate_limit_window_s)

    def applies_to(self, role: str) -> bool:
        """Whether writes by `role` count; admins run bulk imports, so theirs do not."""
        return role != "admin"

    def key(self, user_id: str) -> str:
        """The counter of one user's writes in the current window."""
        return f"{self.tag}:rl:{user_id}:{int(time.time()) // self.window_s}"

    def add_to(self, txn: Txn, user_id: str, role: str) -> Txn:
        """Count this write in `txn` (guard `GUARD`), unless `role` is exempt."""
        if self.applies_to(role):
            txn.limit(GUARD, self.key(user_id), self.writes, self.window_s)
        return txn

    def exceeded(self, retry_after_s: str | int) -> RateLimited:
        """The refusal for a user over the limit."""
        return RateLimited(
            f"too many writes: at most {self.writes} per {self.window_s} s",
            retry_after_s=max(1, int(retry_after_s)),
        )

    async def count(self, committer: Committer, user_id: str, role: str) -> None:
        """Count one write on its own; RateLimited when the user is over the limit."""
        if not self.applies_to(role):
            return
        result = await committer.commit(self.add_to(Txn(), user_id, role))
        if not result.applied:
            raise self.exceeded(result.found or 1)
