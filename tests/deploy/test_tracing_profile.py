"""Compose's optional `tracing` profile (OpenTelemetry Collector + Jaeger), checked offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.test_deploy_files import REDIS_PASSWORD, ROOT, compose

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the collector config")


def config(tmp_path: Path, *args: str, **env: str) -> dict[str, Any]:
    result = compose(
        tmp_path,
        *args,
        "config",
        "--format",
        "json",
        ASKDOC_JWT_SECRET="x" * 32,
        ASKDOC_REDIS_PASSWORD=REDIS_PASSWORD,
        **env,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_tracing_is_off_and_absent_by_default(tmp_path: Path) -> None:
    services = config(tmp_path)["services"]
    assert "otel-collector" not in services and "jaeger" not in services
    assert services["questions"]["environment"]["OTEL_TRACES_EXPORTER"] == "none"


def test_tracing_profile_runs_a_collector_that_forwards_to_jaeger(tmp_path: Path) -> None:
    endpoint = "http://otel-collector:4318"
    services = config(
        tmp_path,
        "--profile",
        "tracing",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
    )["services"]
    collector, jaeger = services["otel-collector"], services["jaeger"]
    [mount] = collector["volumes"]
    assert mount["target"] == "/etc/otelcol/config.yaml" and mount["read_only"]
    assert Path(mount["source"]) == ROOT / "deploy" / "otel" / "collector.yaml"
    assert {"4318", "4317"} <= set(collector["expose"])
    assert any(p["target"] == 16686 for p in jaeger["ports"])
    for name in ("questions", "answers", "votes", "notify", "web"):
        env = services[name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint, name
        assert env["OTEL_TRACES_EXPORTER"] == "otlp", name

    pipeline = yaml.safe_load(mount_text(mount))["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    [exporter] = pipeline["exporters"]
    exporters = yaml.safe_load(mount_text(mount))["exporters"]
    assert exporters[exporter]["endpoint"] == "jaeger:4317"


def mount_text(mount: dict[str, Any]) -> str:
    return Path(mount["source"]).read_text()
