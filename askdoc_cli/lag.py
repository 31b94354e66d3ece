"""`askdoc lag`: every consumer group on every stream, and whether it fell behind retention.

The relay outboxes (`{home}:relay`, shared/relay.py) are listed beside the event streams
when they exist (on a Redis Cluster): their group `relay` pending or lagging means events
committed with their state have yet to reach their streams.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from askdoc_cli.context import human_ms
from shared import retention, streams
from shared.redis import RedisClient
from shared.relay import outboxes


@dataclass(frozen=True)
class GroupLag:
    """One consumer group on one stream."""

    stream: str
    group: str
    length: int
    pending: int
    # Counted by askdoc when Redis reports none (after a restart from its AOF); true when
    # the count stopped at its limit, so the lag is at least `lag`.
    lag: int | None
    lag_at_least: bool
    behind_retention: bool
    lost_unread: int | None
    oldest_pending_id: str | None
    oldest_pending_idle_ms: int | None
    consumers: int
    last_delivered_id: str

    def lag_text(self) -> str:
        """The lag column, saying plainly when the group lost entries it had not read."""
        if self.behind_retention:
            if self.lag is None:
                return "unknown (behind retention)"
            return f"{self.lag} (behind retention: {self.lost_unread} unread entries trimmed)"
        if self.lag is None:
            return "unknown"
        return f"at least {self.lag}" if self.lag_at_least else str(self.lag)


@dataclass(frozen=True)
class StreamLag:
    """A stream's length and the groups reading it."""

    stream: str
    exists: bool
    length: int
    first_entry_id: str | None
    last_entry_id: str | None
    groups: list[GroupLag] = field(default_factory=list)
    # Trims at the byte ceiling that removed unread entries, and how many they removed.
    forced_trims: int = 0
    unread_trimmed: int = 0


async def collect(redis: RedisClient) -> list[StreamLag]:
    """Lengths, groups, pending, lag and oldest pending entry of every askdoc stream, and
    of every relay outbox that exists."""
    result = []
    for stream in (*streams.ALL, *outboxes()):
        try:
            info = await redis.xinfo_stream(stream)
        except ResponseError as exc:
            if "no such key" not in str(exc).lower():
                raise
            if stream in streams.ALL:  # an outbox only exists on a Redis Cluster
                result.append(StreamLag(stream, False, 0, None, None))
            continue
        first = info.get("first-entry")
        last = info.get("last-entry")
        first_id = first[0] if first else None
        forced, unread = await retention.forced_trims(redis, stream)
        entry = StreamLag(
            stream,
            True,
            int(info["length"]),
            first_id,
            last[0] if last else None,
            forced_trims=forced,
            unread_trimmed=unread,
        )
        for group in await redis.xinfo_groups(stream):
            entry.groups.append(await _group_lag(redis, stream, group, entry.length, info))
        result.append(entry)
    return result


async def _group_lag(
    redis: RedisClient,
    stream: str,
    group: dict[str, Any],
    length: int,
    info: dict[str, Any],
) -> GroupLag:
    name = str(group["name"])
    pending = int(group["pending"])
    lag = await retention.group_lag(redis, stream, group, info)
    oldest_id = None
    oldest_idle = None
    if pending:
        summary = await redis.xpending(stream, name)
        oldest_id = summary.get("min")
        if oldest_id:
            entries = await redis.xpending_range(stream, name, oldest_id, oldest_id, 1)
            if entries:
                oldest_idle = int(entries[0]["time_since_delivered"])
    return GroupLag(
        stream=stream,
        group=name,
        length=length,
        pending=pending,
        lag=lag.entries,
        lag_at_least=lag.at_least,
        behind_retention=lag.behind_retention,
        lost_unread=lag.lost_unread,
        oldest_pending_id=oldest_id,
        oldest_pending_idle_ms=oldest_idle,
        consumers=int(group["consumers"]),
        last_delivered_id=str(group["last-delivered-id"]),
    )


def as_json(report: list[StreamLag]) -> dict[str, Any]:
    """The --json document."""
    return {
        "streams": [asdict(s) for s in report],
        "behind_retention": any(g.behind_retention for s in report for g in s.groups),
        "unread_trimmed": sum(s.unread_trimmed for s in report),
    }


def ceiling_lines(report: list[StreamLag]) -> list[str]:
    """One line per stream whose byte ceiling cut entries a group had not read."""
    return [
        f"{s.stream}: the byte ceiling (ASKDOC_STREAM_MAX_BYTES) trimmed {s.unread_trimmed} "
        f"unread entries in {s.forced_trims} trims"
        for s in report
        if s.unread_trimmed
    ]


def table_rows(report: list[StreamLag]) -> tuple[list[list[str]], list[str | None]]:
    """Rows (and their styles) of the lag table."""
    rows: list[list[str]] = []
    styles: list[str | None] = []
    for s in report:
        if not s.groups:
            rows.append([s.stream, "-", str(s.length), "-", "-", "-", "-"])
            styles.append("dim")
        for g in s.groups:
            oldest = "-" if g.oldest_pending_idle_ms is None else human_ms(g.oldest_pending_idle_ms)
            rows.append(
                [
                    g.stream,
                    g.group,
                    str(g.length),
                    str(g.pending),
                    g.lag_text(),
                    oldest,
                    str(g.consumers),
                ]
            )
            styles.append("red" if g.behind_retention else None)
    return rows, styles


COLUMNS = ("stream", "group", "length", "pending", "lag", "oldest pending idle", "consumers")
