"""The alert rules, their unit tests, the PrometheusRule and the Grafana dashboard.

promtool (Debian's `prometheus` package; .ci/run installs it) checks the rules and runs
their unit tests. Without promtool these tests fail rather than skip: an unchecked rule
file is how alerts silently stop working. Every metric name in every PromQL expression
must be one the code exports (or redis_exporter's, named below), with labels it has.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

import services.notify.metrics as notify_metrics
import shared.metrics as shared_metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "askdoc-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "askdoc-rules.test.yml"
MONITORING = ROOT / "deploy" / "k8s" / "monitoring"
DASHBOARD = ROOT / "deploy" / "grafana" / "askdoc-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"

# redis_exporter (oliver006/redis_exporter, the sidecar/container beside Redis) exports
# these; the services cannot, since the memory they describe is Redis's own.
REDIS_EXPORTER = {
    "redis_memory_used_bytes": set(),
    "redis_memory_max_bytes": set(),
    "redis_up": set(),
}
# Labels Prometheus adds to every scraped series (target labels; Kubernetes pods' too).
TARGET_LABELS = {"instance", "job", "namespace", "pod", "container", "service"}

PROMQL_FUNCTIONS = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "absent", "clamp_min", "clamp_max", "vector", "scalar", "topk",
}  # fmt: skip
PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
    "unless", "bool", "offset", "le",
}  # fmt: skip


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail(
            "promtool is not installed: it checks and unit-tests the alert rules. Install "
            "Debian's prometheus package (apt-get install -y prometheus; .ci/run does this)."
        )
    return binary


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, check=False
    )


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


# --- promtool ---------------------------------------------------------------------------


def test_promtool_checks_the_rules_file() -> None:
    result = run(promtool(), "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_checks_the_prometheusrule_groups(tmp_path: Path) -> None:
    # promtool reads plain rule files: check the CRD's spec as one.
    manifest = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    plain = tmp_path / "from-prometheusrule.yml"
    plain.write_text(yaml.safe_dump({"groups": manifest["spec"]["groups"]}))
    result = run(promtool(), "check", "rules", plain)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = run(promtool(), "test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_silent() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for alert in alerts():
        name = alert["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name}: no case where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{name}: no case where it is silent"


# --- one source ---------------------------------------------------------------------------


def test_generated_files_are_current() -> None:
    result = run(sys.executable, ROOT / "scripts" / "monitoring.py", "--check")
    assert result.returncode == 0, result.stderr


def test_prometheusrule_carries_exactly_the_rules_file() -> None:
    manifest = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["spec"]["groups"] == rule_groups()


def test_podmonitor_scrapes_the_services_and_redis_exporter() -> None:
    from tests.deploy.test_deploy_files import BASE, by_kind, render

    (monitor,) = yaml.safe_load_all((MONITORING / "podmonitor.yaml").read_text())
    selector = monitor["spec"]["selector"]["matchLabels"]
    ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    base = render(BASE)
    pods = [d["spec"]["template"] for d in base if d["kind"] in ("Deployment", "StatefulSet")]
    for pod in pods:
        assert selector.items() <= pod["metadata"]["labels"].items()
        named = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        assert named & ports, pod["metadata"]["labels"]
    assert "redis" in by_kind(base, "StatefulSet")
    rendered = render(MONITORING)
    assert {d["kind"] for d in rendered} == {"PrometheusRule", "PodMonitor"}
    assert all(d["metadata"]["namespace"] == "askdoc" for d in rendered)


# --- runbooks -----------------------------------------------------------------------------


def test_every_alert_has_a_runbook_section() -> None:
    text = OPERATIONS.read_text()
    headings = set(re.findall(r"^#{2,4} (Askdoc\w+)\s*$", text, flags=re.MULTILINE))
    for alert in alerts():
        name = alert["alert"]
        assert name in headings, f"docs/operations.md has no section '### {name}'"
        assert alert["annotations"]["runbook_url"] == f"docs/operations.md#{name.lower()}"
        assert alert["labels"]["severity"] in ("info", "warning", "critical")
        assert alert["annotations"]["summary"]


# --- metric names -------------------------------------------------------------------------


def exported_metrics() -> dict[str, set[str]]:
    """Every sample name the services export, with its label names (public API only)."""
    for module in (shared_metrics, notify_metrics):
        for metric in vars(module).values():
            if isinstance(metric, MetricWrapperBase):
                # A labelled metric shows its samples once a child exists.
                names = metric._labelnames
                if names:
                    metric.labels(*["probe"] * len(names))
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    return exported


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """The (metric name, label names matched) of every selector in a PromQL expression."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, Grafana variables
    # Grafana's label_values(metric, label) needs that label on that metric.
    expr = re.sub(r"\blabel_values\(\s*(\w+)\s*,\s*(\w+)\s*\)", r'\1{\2=""}', expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges: [5m], [$__rate_interval]
    expr = re.sub(r"\boffset\s+\w+", " ", expr)
    expr = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr
    )  # grouping labels
    found = []
    for match in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*(\()?", expr):
        name, braces, call = match.groups()
        if call and name in PROMQL_FUNCTIONS:
            continue
        assert not call, f"unknown PromQL function {name!r} in {expr!r}"
        if name in PROMQL_KEYWORDS or re.fullmatch(r"\d+\w*", name):
            continue
        labels = set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", braces or ""))
        found.append((name, labels))
    return found


def dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [
        v["query"]["query"] for v in board["templating"]["list"] if isinstance(v.get("query"), dict)
    ]
    return exprs


def test_selector_parser_reads_what_it_should() -> None:
    expr = (
        'sum by (group) (rate(askdoc_x_total{service="$service", status=~"5.."}[5m])) '
        "/ on (instance) group_left max(up offset 15m) > 0.5 and label_values(y, service)"
    )
    assert selectors(expr) == [
        ("askdoc_x_total", {"service", "status"}),
        ("up", set()),
        ("y", {"service"}),
    ]


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_promql_names_exist_in_the_code(source: str) -> None:
    exprs = [a["expr"] for a in alerts()] if source == "rules" else dashboard_expressions()
    assert exprs
    known = {**exported_metrics(), **REDIS_EXPORTER}
    for expr in exprs:
        picked = selectors(expr)
        assert picked, expr
        for name, labels in picked:
            assert name in known, f"{name} is exported by nothing (in {expr!r})"
            unknown = labels - known[name] - TARGET_LABELS
            assert not unknown, f"{name} has no label {sorted(unknown)} (in {expr!r})"


def test_dashboard_is_per_service_and_covers_the_issue() -> None:
    board = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["service"]["type"] == "query"
    titles = " | ".join(p["title"].lower() for p in board["panels"])
    for topic in (
        "requests per second",
        "latency",
        "published",
        "consumed",
        "lag",
        "dead letters",
        "alerts by kind and outcome",
        "deliveries by channel and status",
    ):
        assert topic in titles, topic
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(
                "$service" in t["expr"] or "redis_" in t["expr"] for t in panel["targets"]
            ), panel["title"]
