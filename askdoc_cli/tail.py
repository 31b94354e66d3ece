"""`askdoc events tail`: follow a stream with plain XREAD, outside every consumer group."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from redis.exceptions import ResponseError
from rich.text import Text

from shared.events import WIRE_FIELD
from shared.redis import RedisClient

# The ids that say what an event is about. Bodies, titles and e-mail stay out of the
# readable line: a terminal scrollback is a log too.
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "question-posted": ("question_id", "topics", "urgent"),
    "answer-posted": ("answer_id", "question_id", "doctor.id"),
    "vote-cast": ("answer_id", "question_id", "value", "tally_version"),
    "doctor-profile-changed": ("doctor_id", "profile_version"),
    "notification-sent": ("notification_id", "kind", "recipient_id", "question_id"),
    "dead-letter": ("source_stream", "entry_id", "group", "delivery_count"),
}
_ENVELOPE_IDS = {"event_id", "correlation_id"}
BLOCK_MS = 1000


def decode_entry(stream: str, entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """One entry as a JSON-able record: the event, or why it could not be read."""
    data = fields.get(WIRE_FIELD)
    if data is None:
        return {
            "stream": stream,
            "entry_id": entry_id,
            "error": f"no {WIRE_FIELD} field",
            "fields": fields,
        }
    try:
        event = json.loads(data)
    except ValueError as exc:
        return {"stream": stream, "entry_id": entry_id, "error": f"not JSON: {exc}"}
    if not isinstance(event, dict):
        return {"stream": stream, "entry_id": entry_id, "error": "not a JSON object"}
    return {"stream": stream, "entry_id": entry_id, "event": event}


def _lookup(event: dict[str, Any], path: str) -> Any:
    value: Any = event
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def key_ids(event: dict[str, Any]) -> list[tuple[str, str]]:
    """The (name, value) pairs worth showing for an event."""
    names = KEY_FIELDS.get(str(event.get("event_type")))
    if names is None:
        names = tuple(k for k in event if k.endswith("_id") and k not in _ENVELOPE_IDS)
    pairs = []
    for name in names:
        value = _lookup(event, name)
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        pairs.append((name.replace(".", "_"), str(value)))
    return pairs


def readable(record: dict[str, Any]) -> Text:
    """One line: time, event type, key ids, correlation id, entry id."""
    entry = f"[{record['entry_id']}]"
    if "event" not in record:
        return Text.assemble(("malformed entry ", "bold red"), entry, " ", record["error"])
    event = record["event"]
    parts: list[tuple[str, str] | str] = [
        (str(event.get("occurred_at", "?")), "dim"),
        "  ",
        (f"{event.get('event_type', '?'):<22}", "bold cyan"),
    ]
    for name, value in key_ids(event):
        parts += [" ", (f"{name}=", "dim"), value]
    parts += [" ", ("correlation_id=", "dim"), str(event.get("correlation_id", "-"))]
    parts += ["  ", (entry, "dim")]
    return Text.assemble(*parts)


async def start_id(redis: RedisClient, stream: str, from_start: bool) -> str:
    """Where to read from: the beginning, or just after the stream's newest entry now."""
    if from_start:
        return "0-0"
    try:
        info = await redis.xinfo_stream(stream)
    except ResponseError:
        return "0-0"  # no stream yet: everything that arrives is new
    return str(info.get("last-generated-id") or "0-0")


async def follow(
    redis: RedisClient,
    stream: str,
    last_id: str,
    count: int | None,
    emit: Callable[[dict[str, Any]], None],
) -> int:
    """Read entries after `last_id` as they arrive until `count` (or forever); the number read."""
    seen = 0
    while count is None or seen < count:
        batch = 100 if count is None else min(100, count - seen)
        reply = await redis.xread({stream: last_id}, count=batch, block=BLOCK_MS)
        groups = reply.items() if isinstance(reply, dict) else (reply or [])
        for _, entries in groups:
            for entry_id, fields in entries:
                last_id = entry_id
                emit(decode_entry(stream, entry_id, fields))
                seen += 1
    return seen
