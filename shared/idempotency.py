"""Idempotency-Key: a repeated write gets the first reply, not a second effect.

A write that carries a key stores its reply under the key in the same atomic commit as
its effect (an `absent` guard of `shared.atomic.Txn`); a repeat finds the reply there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shared.errors import Invalid

#: The name of the Idempotency-Key guard in a commit.
GUARD = "idempotency"


class IdempotencyKeyReused(Invalid):
    """The key was used before with a different request body."""

    code = "idempotency_key_reused"


@dataclass(frozen=True)
class IdempotentWrite:
    """A write the client may repeat: its key and the fingerprint of what it asks."""

    key: str
    fingerprint: str

    @classmethod
    def of(cls, key: str | None, request: Any) -> IdempotentWrite | None:
        """The repeatable write of `request`, or None when no key was sent."""
        # Only a repeatable request needs its fingerprint (saves work on the hot path).
        return cls(key, fingerprint(request)) if key else None


@dataclass(frozen=True)
class ReplyRecord:
    """What a commit stores under an Idempotency-Key: where, the reply, and for how long."""

    key: str
    value: str
    ttl_s: int


def record_key(tag: str, principal: str, key: str) -> str:
    """The Redis key that remembers the reply to one Idempotency-Key of one user."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{tag}:idem:{principal}:{digest}"


def fingerprint(payload: Any) -> str:
    """A stable hash of a request body, to tell a replay from a reuse of the key."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def reply_record(
    tag: str, principal: str, write: IdempotentWrite | None, reply: Any, ttl_s: int
) -> ReplyRecord | None:
    """What to store with a created resource's reply, or None when no key was sent."""
    if write is None:
        return None
    # The status stays in the record so replies stored by earlier versions read the same.
    value = json.dumps({"status": 201, "body": reply, "fp": write.fingerprint}, default=str)
    return ReplyRecord(record_key(tag, principal, write.key), value, ttl_s)


def replay(found: str, write: IdempotentWrite | None) -> Any:
    """The stored reply for a repeated key; IdempotencyKeyReused if the body differs."""
    record = json.loads(found)
    if write is None or record.get("fp") != write.fingerprint:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request body")
    return record["body"]
