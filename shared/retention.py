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


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
