"""State and its event land together: guarded, all-or-nothing writes in one Lua call.

Redis MULTI/EXEC has no rollback, so a transaction is only all-or-nothing when nothing
can fail once it writes. A `Txn` therefore checks every guard first (a dedupe marker or
Idempotency-Key that must be absent, a record that must exist) and only then writes,
including the XADD of the event with an auto id. Every key is declared, so the call is
also valid on Redis Cluster when the keys share a hash tag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shared.events import Event
from shared.redis import RedisClient

# One spec: check every guard first, then write. `apply(spec, base)` runs one Txn whose
# key indexes are offset by `base` into KEYS, so one call can carry several Txns.
_APPLY = """
local function apply(spec, base)
  for i, g in ipairs(spec.g) do
    local key = KEYS[base + g[2]]
    if g[1] == 'limit' then
      -- a fixed-window counter: counts every attempt, refuses past the limit
      local n = redis.call('INCR', key)
      if n == 1 then redis.call('EXPIRE', key, g[4]) end
      if n > g[3] then return {'limited', tostring(i), tostring(redis.call('TTL', key))} end
    elseif g[1] == 'absent' then
      local v = redis.call('GET', key)
      if v then return {'exists', tostring(i), v} end
    elseif redis.call('EXISTS', key) == 0 then
      return {'missing', tostring(i), ''}
    end
  end
  for _, g in ipairs(spec.g) do
    if g[1] == 'absent' then
      if g[4] > 0 then
        redis.call('SET', KEYS[base + g[2]], g[3], 'EX', g[4])
      else
        redis.call('SET', KEYS[base + g[2]], g[3])
      end
    end
  end
  local out = {'ok'}
  for _, w in ipairs(spec.w) do
    local args = {}
    for j = 3, #w do args[#args + 1] = w[j] end
    local key = KEYS[base + w[2]]
    if w[1] == 'HSET_IF_NEWER' then
      -- newest wins: args are version field, version, then field/value pairs
      local current = tonumber(redis.call('HGET', key, args[1]) or '-1')
      if tonumber(args[2]) > current then redis.call('HSET', key, unpack(args)) end
    else
      local r = redis.call(w[1], key, unpack(args))
      if w[1] == 'XADD' then out[#out + 1] = r end
    end
  end
  return out
end
"""
_SCRIPT = _APPLY + "return apply(cjson.decode(ARGV[1]), 0)\n"
# Several independent Txns in one round trip: each is all-or-nothing on its own.
_MANY_SCRIPT = (
    _APPLY
    + """
local specs = cjson.decode(ARGV[1])
local results = {}
for _, spec in ipairs(specs) do results[#results + 1] = apply(spec, spec.b) end
return results
"""
)


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
    guards: list[list[Any]] = field(default_factory=list)
    guard_names: list[str] = field(default_factory=list)
    writes: list[list[Any]] = field(default_factory=list)

    def _index(self, key: str) -> int:
        try:
            return self.keys.index(key) + 1
        except ValueError:
            self.keys.append(key)
            return len(self.keys)

    def absent(self, name: str, key: str, value: str = "1", ttl_s: int = 0) -> Txn:
        """Stop unless `key` is absent; on success set it to `value` (a dedupe marker)."""
        self.guards.append(["absent", self._index(key), value, ttl_s])
        self.guard_names.append(name)
        return self

    def limit(self, name: str, key: str, limit: int, window_s: int) -> Txn:
        """Count this attempt in a fixed window; stop past `limit` (found = seconds left)."""
        self.guards.insert(0, ["limit", self._index(key), limit, window_s])
        self.guard_names.insert(0, name)
        return self

    def present(self, name: str, key: str) -> Txn:
        """Stop unless `key` exists."""
        self.guards.append(["present", self._index(key)])
        self.guard_names.append(name)
        return self

    def call(self, command: str, key: str, *args: str | int | float) -> Txn:
        """Add a write command whose first argument is `key`."""
        self.writes.append([command.upper(), self._index(key), *args])
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
        return self.call("XADD", event.stream, "*", *_flatten(event.to_wire()))


def _flatten(fields: dict[str, str]) -> list[str]:
    return [part for item in fields.items() for part in item]


class Committer:
    """Runs `Txn`s on one Redis client through a cached script."""

    def __init__(self, redis: RedisClient) -> None:
        self._script = redis.register_script(_SCRIPT)
        self._many = redis.register_script(_MANY_SCRIPT)

    async def commit(self, txn: Txn) -> CommitResult:
        """Apply `txn` if every guard holds; otherwise change nothing."""
        spec = json.dumps({"g": txn.guards, "w": txn.writes}, separators=(",", ":"))
        reply = await self._script(keys=txn.keys, args=[spec])
        return _result(txn, reply)

    async def commit_many(self, txns: list[Txn]) -> list[CommitResult]:
        """Apply several Txns in one round trip; each stands or falls on its own guards."""
        if not txns:
            return []
        keys: list[str] = []
        specs = []
        for txn in txns:
            specs.append({"b": len(keys), "g": txn.guards, "w": txn.writes})
            keys.extend(txn.keys)
        spec = json.dumps(specs, separators=(",", ":"))
        replies = await self._many(keys=keys, args=[spec])
        return [_result(txn, reply) for txn, reply in zip(txns, replies, strict=True)]


def _result(txn: Txn, reply: Any) -> CommitResult:
    status = _text(reply[0])
    if status == "ok":
        return CommitResult(True, entry_ids=tuple(_text(r) for r in reply[1:]))
    index = int(_text(reply[1])) - 1
    return CommitResult(False, failed_guard=txn.guard_names[index], found=_text(reply[2]))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
