"""Prometheus metrics shared by the services (one registry per process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "askdoc_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "askdoc_http_request_seconds", "HTTP request latency", ["service", "method", "route"]
)
EVENTS_PUBLISHED = Counter(
    "askdoc_events_published_total", "Events written to streams", ["service", "stream"]
)
_PUBLISHED: dict[tuple[str, str], Any] = {}


def events_published(service: str, stream: str) -> Any:
    """EVENTS_PUBLISHED's counter for one service and stream: `labels()` checks and hashes
    its arguments under a lock on every call; the counters (a few per service) are kept."""
    child = _PUBLISHED.get((service, stream))
    if child is None:
        child = _PUBLISHED[(service, stream)] = EVENTS_PUBLISHED.labels(service, stream)
    return child


EVENTS_RELAYED = Counter(
    "askdoc_events_relayed_total",
    "Events forwarded from a service's outbox to their stream (Redis Cluster only)",
    ["service", "stream"],
)
EVENTS_CONSUMED = Counter(
    "askdoc_events_consumed_total", "Events handled successfully", ["group", "stream"]
)
EVENTS_DEAD_LETTERED = Counter(
    "askdoc_events_dead_lettered_total",
    "Entries moved to the dead-letter stream",
    ["group", "stream"],
)
HANDLER_FAILURES = Counter(
    "askdoc_event_handler_failures_total",
    "Handler runs that raised (the entry is retried, or dead-lettered after the last try)",
    ["group", "stream"],
)
RETRIED_IN_PLACE = Counter(
    "askdoc_event_retries_in_place_total",
    "Handler runs (or acks) repeated at once because Redis was unavailable, before the claim",
    ["group", "stream"],
)
HANDLER_SECONDS = Histogram(
    "askdoc_event_handler_seconds", "Event handler latency", ["group", "stream"]
)
STREAM_LENGTH = Gauge("askdoc_stream_length", "Entries in a stream", ["stream"])
GROUP_PENDING = Gauge(
    "askdoc_group_pending", "Entries delivered but not acked", ["group", "stream"]
)
GROUP_LAG = Gauge(
    "askdoc_group_lag",
    "Entries not yet delivered to the group (-1: it fell behind retention, lost unread entries)",
    ["group", "stream"],
)
READY = Gauge("askdoc_ready", "1 when Redis is reachable and consumers run", ["service"])
STREAM_FORCED_TRIMS = Counter(
    "askdoc_stream_forced_trims_total",
    "Trims at the byte ceiling that removed entries a group had not read",
    ["stream"],
)
STREAM_UNREAD_TRIMMED = Counter(
    "askdoc_stream_unread_trimmed_total",
    "Entries removed at the byte ceiling before every group had read them",
    ["stream"],
)
