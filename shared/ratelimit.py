"""The per-user write limit: a fixed window counted in Redis; admins are exempt.

Every write counts through the same `limit` guard of `shared.atomic.Txn`: either inside
the write's own commit (no extra round trip) or in a commit of its own before the write.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis.exceptions import OutOfMemoryError

from shared.atomic import Committer, Txn
from shared.errors import RateLimited
from shared.settings import Settings

#: The name of the write-limit guard in a commit.
GUARD = "rate_limit"
#: The guard of a refund: the counter is still there (its window has not ended).
REFUND_GUARD = "counted"


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

    async def count(self, committer: Committer, user_id: str, role: str) -> str | None:
        """Count one write on its own; RateLimited when the user is over the limit.

        Returns the counter it counted in (None when `role` is exempt), for `refund`.
        """
        if not self.applies_to(role):
            return None
        key = self.key(user_id)
        result = await committer.commit(Txn().limit(GUARD, key, self.writes, self.window_s))
        if not result.applied:
            raise self.exceeded(result.found or 1)
        return key

    @staticmethod
    async def refund(committer: Committer, key: str) -> None:
        """Take back one write counted in `key`: a request refused by validation costs none.

        A window that ended meanwhile (its counter expired) is left alone, so no counter
        is created without its expiry.
        """
        await committer.commit(Txn().present(REFUND_GUARD, key).call("DECR", key))


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDRs as networks (a bare address is a /32 or /128)."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    )


def _within(address: str, nets: Sequence[Network]) -> bool:
    if not nets:  # the common case, on every anonymous read: no address to parse
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in nets)


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client a request is counted for: the peer, or, when the peer is a trusted proxy,
    the right-most address of X-Forwarded-For that is not itself a trusted proxy."""
    if not forwarded_for or not _within(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _within(hop, trusted):
            return hop
    return hops[0] if hops else peer


@dataclass(frozen=True)
class ReadCount:
    """One anonymous read to count: its address's counter, the limit and the window.

    A route that reads Redis anyway counts it in that same round trip (the question
    page does); `ReadLimit.count` counts it on its own.
    """

    key: str
    reads: int
    window_s: int

    def exceeded(self, retry_after_s: str | int) -> RateLimited:
        """The refusal for an address over the limit."""
        return RateLimited(
            f"too many anonymous reads: at most {self.reads} per {self.window_s} s; "
            "sign in, or retry later",
            retry_after_s=max(1, int(retry_after_s or 1)),
        )


@dataclass(frozen=True)
class ReadLimit:
    """At most `reads` anonymous reads per client address in each window, per service."""

    tag: str
    reads: int
    window_s: int
    exempt: tuple[Network, ...] = ()

    @classmethod
    def of(cls, tag: str, settings: Settings) -> ReadLimit:
        """The anonymous read limit of the service whose keys carry `tag`."""
        return cls(
            tag,
            settings.anon_read_limit,
            settings.anon_read_window_s,
            networks(settings.read_limit_exempt),
        )

    def key(self, address: str) -> str:
        """The counter of one address's reads in the current window (no ':' from IPv6)."""
        safe = address.replace(":", "_")[:64]
        return f"{self.tag}:rl-read:{safe}:{int(time.time()) // self.window_s}"

    def counter(self, address: str) -> ReadCount | None:
        """The read to count for `address`; None when it is exempt or there is no limit."""
        if self.reads == 0 or _within(address, self.exempt):
            return None
        return ReadCount(self.key(address), self.reads, self.window_s)

    async def count(self, committer: Committer, address: str) -> None:
        """Count one anonymous read; RateLimited when the address is over the limit."""
        read = self.counter(address)
        if read is not None:
            await self.count_one(committer, read)

    @staticmethod
    async def count_one(committer: Committer, read: ReadCount) -> None:
        """Count `read` in a commit of its own; RateLimited when its address is over."""
        txn = Txn().limit(GUARD, read.key, read.reads, read.window_s)
        try:
            result = await committer.commit(txn)
        except OutOfMemoryError:
            # A full Redis refuses the counter's write; reads need no memory, so the
            # page still shows (the limit is back as soon as Redis has room).
            return
        if not result.applied:
            raise read.exceeded(result.found or 1)
