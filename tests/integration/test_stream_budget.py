"""The configured stream retention fits the configured Redis maxmemory, measured on a real
redis-server with real events (scripts/stream_budget.py)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import yaml

from tests.deploy.test_deploy_files import maxmemory_of, redis_bytes
from tests.support import ROOT

# Streams may take at most this share of maxmemory at typical event sizes; the rest is
# the services' own data (questions, answers, inboxes, idempotency and dedupe records).
STREAM_SHARE = 0.5


def budget_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "stream_budget", ROOT / "scripts" / "stream_budget.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def configured() -> list[tuple[str, int, int]]:
    """(where, MAXLEN, maxmemory bytes) of compose and the Kubernetes base."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    compose_maxlen = compose["x-askdoc-environment"]["ASKDOC_STREAM_MAXLEN"]
    compose_maxlen = int(compose_maxlen.split(":-")[1].rstrip("}"))
    compose_max = maxmemory_of(compose["services"]["redis"]["command"])
    base = ROOT / "deploy" / "k8s" / "base"
    config = yaml.safe_load((base / "configmap.yaml").read_text())["data"]
    statefulset = next(
        d
        for d in yaml.safe_load_all((base / "redis.yaml").read_text())
        if d["kind"] == "StatefulSet"
    )
    (redis,) = [
        c for c in statefulset["spec"]["template"]["spec"]["containers"] if c["name"] == "redis"
    ]
    env_example = (ROOT / ".env.example").read_text()
    example = int(env_example.split("\nASKDOC_STREAM_MAXLEN=")[1].split()[0])
    return [
        ("compose", compose_maxlen, compose_max),
        (".env.example", example, compose_max),
        ("k8s base", int(config["ASKDOC_STREAM_MAXLEN"]), maxmemory_of(redis["args"])),
    ]


def test_configured_retention_fits_maxmemory(redis_url: str) -> None:
    sizes = budget_script().measure(redis_url, 1000)
    assert set(sizes) == {
        "askdoc.question-posted",
        "askdoc.answer-posted",
        "askdoc.vote-cast",
        "askdoc.doctor-profile-changed",
        "askdoc.notification-sent",
        "askdoc.dead-letter",
    }
    per_entry = sum(s["typical"] for s in sizes.values())
    # The documented figure (about 150 MiB for 20000 entries) is what this measures.
    assert 6_000 <= per_entry <= 9_500, per_entry
    for where, maxlen, maxmemory in configured():
        streams = per_entry * maxlen
        assert streams <= STREAM_SHARE * maxmemory, (where, streams // 2**20, maxmemory // 2**20)
        assert redis_bytes("410mb") == maxmemory, where
