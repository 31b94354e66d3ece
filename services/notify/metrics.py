"""Prometheus metrics of the notify service."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ALERTS = Counter("askdoc_notify_alerts_total", "Alerts put in inboxes or held", ["kind", "outcome"])
DELIVERIES = Counter(
    "askdoc_notify_deliveries_total",
    "External deliveries by channel and final status",
    ["channel", "status"],
)
MATCH_SECONDS = Histogram(
    "askdoc_notify_match_seconds",
    "Time from a question-posted entry to its alerts committed",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
