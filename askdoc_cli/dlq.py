"""`askdoc dlq`: list dead letters and replay them onto their source streams.

A replay XADDs the original entry fields to the source stream as a new entry (every
group on that stream sees it again; consumers are idempotent, so groups that already
processed the event skip it). Replays are recorded in the hash
``{askdoc.dead-letter}:replayed`` (dead-letter id -> JSON {new_entry_id, replayed_at}),
not by XDEL: deleting entries would leave tombstones that make Redis report no lag for
any group reading the dead-letter stream. `--all` skips recorded letters; the record is
written after the XADD, so a crash in between means at worst one harmless re-replay.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from shared import streams
from shared.events import WIRE_FIELD
from shared.redis import RedisClient
from shared.retention import parse_id

REPLAYED_KEY = streams.slot_tag(streams.DEAD_LETTER) + ":replayed"
# The consumer keeps at most this many characters of each field of a dead-lettered entry.
FIELD_LIMIT = 4096
PAGE = 200
ENTRY_ID = re.compile(r"^\d+(-\d+)?$")


@dataclass(frozen=True)
class Letter:
    """One dead letter as read from the stream."""

    id: str
    source_stream: str
    entry_id: str
    group: str
    consumer: str
    error: str
    delivery_count: int | None
    occurred_at: str
    correlation_id: str
    fields: dict[str, str]
    unreadable: str | None = None
    replayed: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """The --json form (the original fields included, so a script can inspect them)."""
        return {
            "id": self.id,
            "time": self.occurred_at,
            "source_stream": self.source_stream,
            "entry_id": self.entry_id,
            "group": self.group,
            "consumer": self.consumer,
            "deliveries": self.delivery_count,
            "error": self.error,
            "correlation_id": self.correlation_id,
            "fields": self.fields,
            "unreadable": self.unreadable,
            "replayed": self.replayed,
        }


def parse_letter(letter_id: str, raw: dict[str, str]) -> Letter:
    """A dead letter from its stream entry; an unreadable one keeps what is known."""
    try:
        data = json.loads(raw[WIRE_FIELD])
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (KeyError, ValueError) as exc:
        return Letter(letter_id, "?", "?", "?", "?", "", None, "?", "?", {}, f"unreadable: {exc}")
    fields = data.get("fields")
    count = data.get("delivery_count")
    return Letter(
        id=letter_id,
        source_stream=str(data.get("source_stream", "?")),
        entry_id=str(data.get("entry_id", "?")),
        group=str(data.get("group", "?")),
        consumer=str(data.get("consumer", "?")),
        error=str(data.get("error", "")),
        delivery_count=count if isinstance(count, int) else None,
        occurred_at=str(data.get("occurred_at", "?")),
        correlation_id=str(data.get("correlation_id", "?")),
        fields={str(k): str(v) for k, v in fields.items()} if isinstance(fields, dict) else {},
    )


def replay_problem(letter: Letter) -> str | None:
    """Why a letter cannot be replayed faithfully, or None."""
    if letter.unreadable:
        return letter.unreadable
    if letter.source_stream not in streams.ALL or letter.source_stream == streams.DEAD_LETTER:
        return f"source stream {letter.source_stream!r} is not an askdoc event stream"
    if not letter.fields:
        return "the dead letter holds no original fields"
    for name, value in letter.fields.items():
        if len(value) < FIELD_LIMIT:
            continue
        if name == WIRE_FIELD and _is_json(value):
            continue
        return f"field {name} was truncated when dead-lettered; replaying it would corrupt it"
    return None


def event_time(letter: Letter) -> datetime:
    """When the dead-lettered event happened: its `occurred_at`, else its entry id's time."""
    try:
        stamp = json.loads(letter.fields[WIRE_FIELD])["occurred_at"]
        return datetime.fromisoformat(stamp).astimezone(UTC)
    except (KeyError, TypeError, ValueError):
        ms, _ = parse_id(letter.entry_id if ENTRY_ID.match(letter.entry_id) else letter.id)
        return datetime.fromtimestamp(ms / 1000, UTC)


def stale_problem(letter: Letter, dedupe_ttl_s: int, now: datetime | None = None) -> str | None:
    """Why replaying would risk repeating effects: the event outlived the dedupe markers."""
    age = (now or datetime.now(UTC)) - event_time(letter)
    if age.total_seconds() <= dedupe_ttl_s:
        return None
    return (
        f"the event is {age.days} days old, older than the dedupe window "
        f"({dedupe_ttl_s // 86400} days): its effects could repeat (--force replays it anyway)"
    )


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


async def _with_replays(redis: RedisClient, letters: list[Letter]) -> list[Letter]:
    if not letters:
        return letters
    records = await redis.hmget(REPLAYED_KEY, [letter.id for letter in letters])
    return [
        letter if rec is None else replace(letter, replayed=json.loads(rec))
        for letter, rec in zip(letters, records, strict=True)
    ]


async def newest(redis: RedisClient, limit: int, group: str | None) -> list[Letter]:
    """Up to `limit` dead letters, newest first, optionally of one group."""
    found: list[Letter] = []
    upper = "+"
    while len(found) < limit:
        page = await redis.xrevrange(streams.DEAD_LETTER, upper, "-", count=PAGE)
        if not page:
            break
        for letter_id, raw in page:
            letter = parse_letter(letter_id, raw)
            if group is None or letter.group == group:
                found.append(letter)
        upper = "(" + page[-1][0]
    return await _with_replays(redis, found[:limit])


async def by_ids(redis: RedisClient, ids: list[str]) -> tuple[list[Letter], list[str]]:
    """The dead letters with these ids, and the ids not found."""
    letters: list[Letter] = []
    missing: list[str] = []
    for letter_id in dict.fromkeys(ids):
        page = await redis.xrange(streams.DEAD_LETTER, letter_id, letter_id, count=1)
        if page:
            letters.append(parse_letter(page[0][0], page[0][1]))
        else:
            missing.append(letter_id)
    return await _with_replays(redis, letters), missing


async def all_letters(redis: RedisClient, group: str | None) -> list[Letter]:
    """Every dead letter (optionally of one group), oldest first, so replays keep order."""
    found: list[Letter] = []
    lower = "-"
    while True:
        page = await redis.xrange(streams.DEAD_LETTER, lower, "+", count=PAGE)
        if not page:
            break
        letters = [parse_letter(i, raw) for i, raw in page]
        found += [x for x in letters if group is None or x.group == group]
        lower = "(" + page[-1][0]
    return await _with_replays(redis, found)


async def replay(redis: RedisClient, letter: Letter) -> str:
    """XADD the original fields to the source stream, then record the replay; the new id."""
    # Untrimmed, as every event: retention is the services' trimmer's (shared/retention.py).
    new_id = str(await redis.xadd(letter.source_stream, letter.fields))
    record = {
        "new_entry_id": new_id,
        "source_stream": letter.source_stream,
        "replayed_at": datetime.now(UTC).isoformat(),
    }
    await redis.hset(REPLAYED_KEY, letter.id, json.dumps(record))
    return new_id


async def prune_records(redis: RedisClient) -> int:
    """Forget replay records of letters retention already trimmed (keeps the hash bounded)."""
    first = await redis.xrange(streams.DEAD_LETTER, "-", "+", count=1)
    ids = await redis.hkeys(REPLAYED_KEY)
    if not first:
        stale = list(ids)
    else:
        oldest = parse_id(first[0][0])
        stale = [i for i in ids if parse_id(i) < oldest]
    if stale:
        await redis.hdel(REPLAYED_KEY, *stale)
    return len(stale)
