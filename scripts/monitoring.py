"""Write the monitoring files derived from one source each, or check they are current.

    python scripts/monitoring.py          # write them
    python scripts/monitoring.py --check  # exit 1 if a written file differs (make test runs it)

- deploy/k8s/monitoring/prometheusrule.yaml: the PrometheusRule (Prometheus Operator),
  whose groups are exactly those of deploy/prometheus/askdoc-rules.yml, the one source
  of the alert rules.
- deploy/grafana/askdoc-dashboard.json: the Grafana dashboard, built from PANELS below.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "askdoc-rules.yml"
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "monitoring" / "prometheusrule.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "askdoc-dashboard.json"

RULE_HEADER = """\
# GENERATED from deploy/prometheus/askdoc-rules.yml by `python scripts/monitoring.py`:
# edit that file, not this one (tests/deploy/test_monitoring.py fails if they differ).
# Needs the Prometheus Operator's CRDs (monitoring.coreos.com/v1). The label `release`
# is what a kube-prometheus-stack's ruleSelector matches by default; change it to yours.
"""


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as literal blocks, so the file stays readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def prometheus_rule() -> str:
    """The PrometheusRule manifest carrying the plain rules file's groups."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "askdoc",
            "labels": {"app.kubernetes.io/part-of": "askdoc", "release": "prometheus"},
        },
        "spec": {"groups": groups},
    }
    body = yaml.dump(manifest, Dumper=_BlockDumper, sort_keys=False, width=100)
    return RULE_HEADER + body


# --- the dashboard ----------------------------------------------------------------------

RATE = "$__rate_interval"
SERVICE = 'service="$service"'
GROUP = 'group="$service"'
# notify's own metrics carry no service label: keep their series only when the chosen
# service is notify, by joining on the replica (instance) to its readiness gauge.
ONLY_SELECTED = 'and on (instance) askdoc_ready{service="$service"}'

# (row title, [(panel title, unit, [(PromQL, legend)])])
PANELS: list[tuple[str, list[tuple[str, str, list[tuple[str, str]]]]]] = [
    (
        "HTTP",
        [
            (
                "Requests per second by route and status",
                "reqps",
                [
                    (
                        "sum by (route, status) "
                        f"(rate(askdoc_http_requests_total{{{SERVICE}}}[{RATE}]))",
                        "{{route}} {{status}}",
                    )
                ],
            ),
            (
                "Request latency",
                "s",
                [
                    (
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(askdoc_http_request_seconds_bucket{{{SERVICE}}}[{RATE}])))",
                        f"p{int(q * 100)}",
                    )
                    for q in (0.5, 0.95, 0.99)
                ],
            ),
            (
                "Server errors (5xx) per second by route",
                "reqps",
                [
                    (
                        "sum by (route) "
                        f'(rate(askdoc_http_requests_total{{{SERVICE}, status=~"5.."}}[{RATE}]))',
                        "{{route}}",
                    )
                ],
            ),
        ],
    ),
    (
        "Events",
        [
            (
                "Events published per second",
                "ops",
                [
                    (
                        "sum by (stream) "
                        f"(rate(askdoc_events_published_total{{{SERVICE}}}[{RATE}]))",
                        "{{stream}}",
                    )
                ],
            ),
            (
                "Events consumed per second",
                "ops",
                [
                    (
                        f"sum by (stream) (rate(askdoc_events_consumed_total{{{GROUP}}}[{RATE}]))",
                        "{{stream}}",
                    )
                ],
            ),
            (
                "Handler failures per second",
                "ops",
                [
                    (
                        "sum by (stream) "
                        f"(rate(askdoc_event_handler_failures_total{{{GROUP}}}[{RATE}]))",
                        "{{stream}}",
                    )
                ],
            ),
            (
                "Handler latency (p95)",
                "s",
                [
                    (
                        "histogram_quantile(0.95, sum by (le, stream) "
                        f"(rate(askdoc_event_handler_seconds_bucket{{{GROUP}}}[{RATE}])))",
                        "{{stream}}",
                    )
                ],
            ),
        ],
    ),
    (
        "Consumer groups",
        [
            (
                "Lag: entries not yet delivered (-1: behind retention)",
                "short",
                [(f"max by (stream) (askdoc_group_lag{{{GROUP}}})", "{{stream}}")],
            ),
            (
                "Pending: delivered, not acked",
                "short",
                [(f"max by (stream) (askdoc_group_pending{{{GROUP}}})", "{{stream}}")],
            ),
            (
                "Dead letters (per hour)",
                "short",
                [
                    (
                        "sum by (stream) "
                        f"(increase(askdoc_events_dead_lettered_total{{{GROUP}}}[1h]))",
                        "{{stream}}",
                    )
                ],
            ),
            (
                "Stream length",
                "short",
                [
                    (
                        "max by (stream) (askdoc_stream_length "
                        'and on (instance) askdoc_ready{service="$service"})',
                        "{{stream}}",
                    )
                ],
            ),
        ],
    ),
    (
        "Alerts to doctors (notify)",
        [
            (
                "Alerts by kind and outcome per second",
                "ops",
                [
                    (
                        "sum by (kind, outcome) "
                        f"(rate(askdoc_notify_alerts_total[{RATE}]) {ONLY_SELECTED})",
                        "{{kind}} {{outcome}}",
                    )
                ],
            ),
            (
                "Deliveries by channel and status per second",
                "ops",
                [
                    (
                        "sum by (channel, status) "
                        f"(rate(askdoc_notify_deliveries_total[{RATE}]) {ONLY_SELECTED})",
                        "{{channel}} {{status}}",
                    )
                ],
            ),
            (
                "Matching latency (question-posted to alerts committed)",
                "s",
                [
                    (
                        "histogram_quantile(0.95, sum by (le) "
                        f"(rate(askdoc_notify_match_seconds_bucket[{RATE}]) {ONLY_SELECTED}))",
                        "p95",
                    )
                ],
            ),
            (
                "Open files per replica (live streams hold one each)",
                "percentunit",
                [
                    (
                        f"process_open_fds / process_max_fds {ONLY_SELECTED}",
                        "{{instance}}",
                    )
                ],
            ),
        ],
    ),
    (
        "Replicas and Redis",
        [
            (
                "Ready replicas",
                "short",
                [(f"sum(askdoc_ready{{{SERVICE}}})", "ready")],
            ),
            (
                "Resident memory per replica",
                "bytes",
                [
                    (
                        f"process_resident_memory_bytes {ONLY_SELECTED}",
                        "{{instance}}",
                    )
                ],
            ),
            (
                "Redis memory: used and maxmemory (redis_exporter)",
                "bytes",
                [
                    ("max(redis_memory_used_bytes)", "used"),
                    ("max(redis_memory_max_bytes)", "maxmemory"),
                ],
            ),
        ],
    ),
]

WIDTH = 24
PANEL_WIDTH = 8
PANEL_HEIGHT = 8
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _panel(
    panel_id: int, title: str, unit: str, queries: list[tuple[str, str]], x: int, y: int
) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": PANEL_HEIGHT, "w": PANEL_WIDTH, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        "targets": [
            {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(65 + n)}
            for n, (expr, legend) in enumerate(queries)
        ],
    }


def dashboard() -> str:
    """The Grafana dashboard JSON: one row per concern, every panel for the chosen service."""
    panels: list[dict[str, Any]] = []
    y = 0
    panel_id = 1
    for row_title, row_panels in PANELS:
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id += 1
        y += 1
        for n, (title, unit, queries) in enumerate(row_panels):
            x = (n * PANEL_WIDTH) % WIDTH
            if n and x == 0:
                y += PANEL_HEIGHT
            panels.append(_panel(panel_id, title, unit, queries, x, y))
            panel_id += 1
        y += PANEL_HEIGHT
    board = {
        "uid": "askdoc-services",
        "title": "askdoc services",
        "description": "Per service: HTTP, events, consumer groups, alerts and deliveries, Redis.",
        "tags": ["askdoc"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "name": "service",
                    "label": "Service",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": "label_values(askdoc_ready, service)", "refId": "service"},
                    "definition": "label_values(askdoc_ready, service)",
                    "refresh": 2,
                    "sort": 1,
                    "multi": False,
                    "includeAll": False,
                    "current": {},
                    "hide": 0,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }
    return json.dumps(board, indent=2) + "\n"


OUTPUTS = {PROMETHEUS_RULE: prometheus_rule, DASHBOARD: dashboard}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args()
    stale = []
    for path, build in OUTPUTS.items():
        text = build()
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.relative_to(ROOT))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(
            "out of date (run: python scripts/monitoring.py): " + ", ".join(map(str, stale)),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
