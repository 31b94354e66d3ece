"""Every service's import graph: no cycle inside a service, and a core that knows no HTTP.

Reads the source with `ast` (nothing is imported), so TYPE_CHECKING imports count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
# The HTTP edge of a service; every other module is its core.
EDGE = {"api", "app", "__main__"}
HTTP_PACKAGES = {"fastapi", "starlette"}
# The web service is all edge (a backend-for-frontend): it is skipped as a whole.
ALL_EDGE_SERVICES = {"web"}
NOT_YET = {
    "notify": "notify's split into parts lands on the notify helper's branch (issue 13)",
}


def service_names() -> list[str]:
    return sorted(p.name for p in SERVICES.iterdir() if (p / "__init__.py").exists())


def modules(service: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of one service."""
    found = {}
    for path in sorted((SERVICES / service).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The absolute names a module imports (`from pkg import sub` names `pkg.sub`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            for alias in node.names:
                if f"{target}.{alias.name}" in known:
                    found.add(f"{target}.{alias.name}")
    return found


def graph(service: str) -> dict[str, set[str]]:
    """Import edges between the modules of one service."""
    known = modules(service)
    return {
        name: {other for other in imports_of(name, path, known) if other in known and other != name}
        for name, path in known.items()
    }


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of module names, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def params() -> list[object]:
    return [
        pytest.param(
            name,
            marks=[pytest.mark.xfail(strict=False, reason=NOT_YET[name])]
            if name in NOT_YET
            else [],
        )
        for name in service_names()
    ]


def test_the_walk_sees_every_service() -> None:
    assert {"questions", "answers", "votes", "notify"} <= set(service_names())


def test_the_walk_finds_a_cycle_and_relative_imports() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    edges = graph("votes")
    assert "services.votes.service" in edges["services.votes.api"]
    assert "services.votes.handlers" in edges["services.votes.app"]


@pytest.mark.parametrize("service", params())
def test_no_import_cycle_inside_a_service(service: str) -> None:
    assert find_cycle(graph(service)) is None


@pytest.mark.parametrize("service", params())
def test_core_modules_import_no_http_and_no_api(service: str) -> None:
    if service in ALL_EDGE_SERVICES:
        pytest.skip("the web service is all HTTP edge")
    known = modules(service)
    offenders = []
    for name, path in known.items():
        if name.rpartition(".")[2] in EDGE:
            continue
        for imported in imports_of(name, path, known):
            top = imported.split(".")[0]
            own_api = imported.startswith("services.") and imported.rpartition(".")[2] == "api"
            if top in HTTP_PACKAGES or own_api:
                offenders.append(f"{name} imports {imported}")
    assert not offenders, "\n".join(offenders)
