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

_SCRIPT = """
local spec = cjson.decode(ARGV[1])
for i, g in ipairs(spec.g) do
  local key = KEYS[g[2]]
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
      redis.call('SET', KEYS[g[2]], g[3], 'EX', g[4])
    else
      redis.call('SET', KEYS[g[2]], g[3])
    end
  end
end
local out = {'ok'}
for _, w in ipairs(spec.w) do
  local args = {}
  for j = 3, #w do args[#args + 1] = w[j] end
  if w[1] == 'HSET_IF_NEWER' then
    -- newest wins: args are version field, version, then field/value pairs
    local current = tonumber(redis.call('HGET', KEYS[w[2]], args[1]) or '-1')
    if tonumber(args[2]) > current then redis.call('HSET', KEYS[w[2]], unpack(args)) end
  else
    local r = redis.call(w[1], KEYS[w[2]], unpack(args))
    if w[1] == 'XADD' then out[#out + 1] = r end
  end
end
return out
"""


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

    def publish(self, event: Event, maxlen: int) -> Txn:
        """Add the event to its stream, trimmed approximately to `maxlen`."""
        return self.call(
            "XADD", event.stream, "MAXLEN", "~", maxlen, "*", *_flatten(event.to_wire())
        )


def _flatten(fields: dict[str, str]) -> list[str]:
    return [part for item in fields.items() for part in item]


class Committer:
    """Runs `Txn`s on one Redis client through a cached script."""

    def __init__(self, redis: RedisClient) -> None:
        self._script = redis.register_script(_SCRIPT)

    async def commit(self, txn: Txn) -> CommitResult:
        """Apply `txn` if every guard holds; otherwise change nothing."""
        spec = json.dumps({"g": txn.guards, "w": txn.writes}, separators=(",", ":"))
        reply = await self._script(keys=txn.keys, args=[spec])
        status = _text(reply[0])
        if status == "ok":
            return CommitResult(True, entry_ids=tuple(_text(r) for r in reply[1:]))
        index = int(_text(reply[1])) - 1
        return CommitResult(False, failed_guard=txn.guard_names[index], found=_text(reply[2]))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
