"""State and its event land together: guarded, all-or-nothing writes in one Lua call.

Redis MULTI/EXEC has no rollback, so a transaction is only all-or-nothing when nothing
can fail once it writes. A `Txn` therefore checks every guard first (a dedupe marker or
Idempotency-Key that must be absent, a record that must exist) and only then writes,
including the XADD of the event with an auto id. Every key is declared, so the call is
also valid on Redis Cluster when the keys share a hash tag. The script is atomic.lua
beside this module; guards and writes reach it as JSON with named fields.

On a cluster, an event whose stream hashes to another slot than the state it announces
(e.g. question-edited beside a question kept in the question-posted slot) cannot be in
the same script: a Committer given an outbox writes such an event to that outbox instead,
in the state's slot and the same call, and shared/relay.py forwards it to its stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_json
from redis.crc import key_slot
from redis.exceptions import NoScriptError

from shared import tracing
from shared.events import Event
from shared.lua import script
from shared.redis import RedisClient


@dataclass(frozen=True)
class CommitResult:
    """What a commit did: applied, or which guard stopped it (and the value it found)."""

    applied: bool
    failed_guard: str | None = None
    found: str | None = None
    entry_ids: tuple[str, ...] = ()


@dataclass
class Txn:
    """A set of guards and writes to apply atomically."""

    keys: list[str] = field(default_factory=list)
    guards: list[dict[str, Any]] = field(default_factory=list)
    guard_names: list[str] = field(default_factory=list)
    writes: list[dict[str, Any]] = field(default_factory=list)
    # Producer spans of the events published, by the index of their XADD among the writes.
    spans: list[tuple[int, Any]] = field(default_factory=list)
    # Each key's KEYS index: a list search (and a ValueError per new key) was a twentieth
    # of a question's post, whose commit declares sixteen keys.
    _positions: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def _index(self, key: str) -> int:
        position = self._positions.get(key)
        if position is None:
            self.keys.append(key)
            position = self._positions[key] = len(self.keys)
        return position

    def __post_init__(self) -> None:
        for key in self.keys:  # keys given up front keep their places
            self._positions.setdefault(key, len(self._positions) + 1)

    def absent(self, name: str, key: str, value: str = "1", ttl_s: int = 0) -> Txn:
        """Stop unless `key` is absent; on success set it to `value` (a dedupe marker)."""
        self.guards.append(
            {"kind": "absent", "key": self._index(key), "value": value, "ttl_s": ttl_s}
        )
        self.guard_names.append(name)
        return self

    def limit(self, name: str, key: str, limit: int, window_s: int) -> Txn:
        """Count this attempt in a fixed window; stop past `limit` (found = seconds left)."""
        guard = {"kind": "limit", "key": self._index(key), "limit": limit, "window_s": window_s}
        self.guards.insert(0, guard)
        self.guard_names.insert(0, name)
        return self

    def present(self, name: str, key: str) -> Txn:
        """Stop unless `key` exists."""
        self.guards.append({"kind": "present", "key": self._index(key)})
        self.guard_names.append(name)
        return self

    def call(
        self,
        command: str,
        key: str,
        *args: str | int | float,
        when: Sequence[str] = (),
        unless: Sequence[str] = (),
    ) -> Txn:
        """Add a write command whose first argument is `key`.

        With `when`, the write happens only if one of those keys exists; with `unless`,
        only if none does (checked when the write's turn comes, inside the same call).
        A state another writer keeps (say, a flag that an item is hidden) thus decides
        the write atomically, without failing the whole Txn as a guard would.
        """
        write: dict[str, Any] = {"command": command.upper(), "key": self._index(key), "args": args}
        if when:
            write["when"] = [self._index(k) for k in when]
        if unless:
            write["unless"] = [self._index(k) for k in unless]
        self.writes.append(write)
        return self

    def set_if_newer(
        self, key: str, version_field: str, version: int, fields: dict[str, str | int | float]
    ) -> Txn:
        """HSET `fields` (and the version) only if `version` beats the stored one."""
        flat = [part for item in fields.items() for part in item]
        return self.call("HSET_IF_NEWER", key, version_field, version, *flat)

    def publish(self, event: Event, maxlen: int | None = None) -> Txn:
        """Add the event to its stream, untrimmed.

        Retention is the trimmer's job (shared/retention.py), which never cuts what a
        group has yet to read; `maxlen` is ignored and goes once no caller passes it.
        """
        span = tracing.publishing(event.stream)
        if span is not None:
            xadds = sum(1 for w in self.writes if w["command"] == "XADD")
            self.spans.append((xadds, span))
            event = event.model_copy(update={"traceparent": tracing.span_traceparent(span)})
        return self.call("XADD", event.stream, "*", *_flatten(event.to_wire()))


def _flatten(fields: dict[str, str]) -> list[str]:
    return [part for item in fields.items() for part in item]


def relayed(txn: Txn, outbox: str) -> Txn:
    """`txn` with its events for streams in other hash slots written to `outbox` instead.

    Only a Txn whose state is all in the outbox's slot is changed; the outbox entry is the
    event's fields after a `stream` field naming where the relay forwards it.
    """
    home = key_slot(outbox.encode())
    xadds = {w["key"] for w in txn.writes if w["command"] == "XADD"}
    state = {i for i in range(1, len(txn.keys) + 1) if i not in xadds}
    if not state or any(key_slot(txn.keys[i - 1].encode()) != home for i in state):
        return txn
    away = {i for i in xadds if key_slot(txn.keys[i - 1].encode()) != home}
    if not away:
        return txn
    # Rebuilt so that the away streams are not even declared (a cluster refuses the call
    # when any declared key is in another slot).
    copy = Txn(guard_names=list(txn.guard_names), spans=list(txn.spans))
    for g in txn.guards:
        copy.guards.append({**g, "key": copy._index(txn.keys[g["key"] - 1])})
    for w in txn.writes:
        key = txn.keys[w["key"] - 1]
        if w["key"] in away:
            copy.call(
                "XADD",
                outbox,
                w["args"][0],
                "stream",
                key,
                *w["args"][1:],
                when=[txn.keys[i - 1] for i in w.get("when", ())],
                unless=[txn.keys[i - 1] for i in w.get("unless", ())],
            )
        else:
            moved = {**w, "key": copy._index(key)}
            for condition in ("when", "unless"):
                if condition in w:
                    moved[condition] = [copy._index(txn.keys[i - 1]) for i in w[condition]]
            copy.writes.append(moved)
    return copy


class Committer:
    """Runs `Txn`s on one Redis client through a cached script.

    With an `outbox` (on a cluster), events bound for another hash slot than their state
    go through it (see `relayed`).
    """

    def __init__(self, redis: RedisClient, outbox: str | None = None) -> None:
        self._redis = redis
        self._script = redis.register_script(script("shared", "atomic.lua"))
        self.outbox = outbox

    async def _evalsha(self, keys: list[str], spec: bytes) -> Any:
        """atomic.lua by its digest, loaded first where the server lacks it (a restart, a
        flush, a failover), as redis-py's script object does, but with one call less:
        its wrappers were a twentieth of a question's post."""
        try:
            return await self._redis.execute_command(
                "EVALSHA", self._script.sha, len(keys), *keys, spec
            )
        except NoScriptError:
            self._script.sha = await self._redis.script_load(self._script.script)
            return await self._redis.execute_command(
                "EVALSHA", self._script.sha, len(keys), *keys, spec
            )

    async def commit(self, txn: Txn) -> CommitResult:
        """Apply `txn` if every guard holds; otherwise change nothing."""
        [result] = await self.commit_many([txn])
        return result

    async def commit_many(self, txns: list[Txn]) -> list[CommitResult]:
        """Apply several Txns in one round trip; each stands or falls on its own guards."""
        if not txns:
            return []
        if self.outbox is not None:
            txns = [relayed(txn, self.outbox) for txn in txns]
        keys: list[str] = []
        specs = []
        for txn in txns:
            specs.append({"base": len(keys), "guards": txn.guards, "writes": txn.writes})
            keys.extend(txn.keys)
        # pydantic-core's encoder: a third of json.dumps's time for a question's spec (whose
        # strings are the document's and the event's JSON), the same JSON (compact, UTF-8).
        spec = to_json(specs)
        replies = await self._evalsha(keys, spec)
        results = [_result(txn, reply) for txn, reply in zip(txns, replies, strict=True)]
        for txn, result in zip(txns, results, strict=True):
            for index, span in txn.spans:
                tracing.end_publish(
                    span, (result.entry_ids[index] or None) if result.applied else None
                )
        return results


def _result(txn: Txn, reply: Any) -> CommitResult:
    status = _text(reply[0])
    if status == "ok":
        return CommitResult(True, entry_ids=tuple(_text(r) for r in reply[1:]))
    index = int(_text(reply[1])) - 1
    return CommitResult(False, failed_guard=txn.guard_names[index], found=_text(reply[2]))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
