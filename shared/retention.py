"""Stream retention: trim to the set length, never past what a consumer group has to read.

Events are added without MAXLEN; each service trims the streams it writes every
`trim_interval_s` (shared/retention.lua, one atomic script per stream). A stream is cut to
`stream_maxlen` entries only as far as every group has read and acked; a lagging group
holds its unread entries. The one exception is the hard ceiling `stream_max_bytes`: a
stream over it is cut anyway, and the unread entries lost are counted in the metric
`askdoc_stream_unread_trimmed_total` and in the stream's record that `askdoc lag` shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import streams
from shared.logging import get_logger
from shared.metrics import STREAM_FORCED_TRIMS, STREAM_UNREAD_TRIMMED
from shared.redis import RedisClient

log = get_logger("askdoc.retention")

_SCRIPT = (Path(__file__).parent / "retention.lua").read_text()


def record_key(stream: str) -> str:
    """The hash counting a stream's forced trims (same hash slot as the stream)."""
    if "{" in stream:  # an internal stream whose key carries its hash tag already
        return f"{stream}:retention"
    return f"{streams.slot_tag(stream)}:retention"


@dataclass(frozen=True)
class TrimResult:
    """What one trim did: kept, maxlen, minid (held back by a group), held, ceiling."""

    stream: str
    outcome: str
    removed: int
    unread_removed: int
    floor: str | None


class Trimmer:
    """Trims streams under the retention rules above."""

    def __init__(self, redis: RedisClient) -> None:
        self._script = redis.register_script(_SCRIPT)

    async def trim(self, stream: str, maxlen: int, max_bytes: int) -> TrimResult:
        """Trim `stream` once; counts and logs a forced trim that lost unread entries."""
        reply = await self._script(
            keys=[stream, record_key(stream)], args=[maxlen, max_bytes, int(time.time() * 1000)]
        )
        outcome, removed, lost, floor = (_text(x) for x in reply)
        result = TrimResult(stream, outcome, int(removed), int(lost), floor or None)
        if result.unread_removed:
            STREAM_FORCED_TRIMS.labels(stream).inc()
            STREAM_UNREAD_TRIMMED.labels(stream).inc(result.unread_removed)
            log.error(
                "stream_ceiling_trimmed_unread",
                stream=stream,
                removed=result.removed,
                unread_removed=result.unread_removed,
                max_bytes=max_bytes,
            )
        elif outcome == "held":
            log.info("stream_trim_held_by_group", stream=stream, floor=floor, maxlen=maxlen)
        return result


async def forced_trims(redis: RedisClient, stream: str) -> tuple[int, int]:
    """(forced trims, unread entries they removed) recorded for `stream`."""
    record = await redis.hgetall(record_key(stream))
    return int(record.get("forced_trims", 0)), int(record.get("unread_trimmed", 0))


# How far `group_lag` counts a lag Redis does not report; beyond, it says "at least".
UNREAD_COUNT_LIMIT = 10_000


@dataclass(frozen=True)
class Lag:
    """A group's lag on a stream as an operator needs it.

    `entries` is None only when it cannot be known: the group fell behind retention and
    Redis cannot count what it lost. `at_least` says the count stopped at its limit.
    """

    entries: int | None
    behind_retention: bool
    lost_unread: int | None
    at_least: bool = False


def parse_id(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a comparable pair: '1712-3' -> (1712, 3)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def behind_retention(
    lag: int | None,
    length: int,
    last_delivered_id: str,
    first_entry_id: str | None,
    last_generated_id: str,
) -> tuple[bool, int | None]:
    """Whether a group has unread entries that the stream no longer holds, and how many.

    Redis 7 keeps counting `lag` (entries added minus entries read) across a trim, so a
    lag larger than the stream is the sign: those unread entries were trimmed. Redis
    reports no lag at all when entries were deleted (XDEL) inside the unread range, or
    after it restarted from its AOF; then the ids tell: a group whose last delivered id is
    older than the stream's first entry has lost what lay in between.
    """
    if lag is not None:
        return (True, lag - length) if lag > length else (False, 0)
    delivered = parse_id(last_delivered_id)
    if first_entry_id is None:
        return delivered < parse_id(last_generated_id), None
    return delivered < parse_id(first_entry_id), None


async def group_lag(
    redis: RedisClient,
    stream: str,
    group: dict[str, Any],
    info: dict[str, Any],
    limit: int = UNREAD_COUNT_LIMIT,
) -> Lag:
    """The lag of `group` (an XINFO GROUPS row) on `stream` (`info`: its XINFO STREAM).

    Redis reports no lag (nil) after it restarted from its AOF, until the group reads
    the stream's last entry: the XCLAIM ... LASTID that the AOF replays for a read does not
    carry the group's entries-read. A quiet stream's group stays so for hours, and a busy
    one through its whole catch-up, just when an operator watches it. Unless the group
    fell behind retention, the entries after its last delivered id are what it has to
    read: then they are counted with XRANGE, up to `limit`.
    """
    length = int(info["length"])
    first = info.get("first-entry")
    last_delivered = _text(group["last-delivered-id"])
    last_generated = _text(info.get("last-generated-id", "0-0"))
    raw = group.get("lag")
    lag = None if raw is None else int(raw)
    behind, lost = behind_retention(
        lag, length, last_delivered, _text(first[0]) if first else None, last_generated
    )
    if lag is not None or behind:
        return Lag(lag, behind, lost)
    if parse_id(last_delivered) >= parse_id(last_generated):
        return Lag(0, False, 0)
    unread = await redis.xrange(stream, min=f"({last_delivered}", max="+", count=limit)
    return Lag(len(unread), False, 0, at_least=len(unread) >= limit)


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
