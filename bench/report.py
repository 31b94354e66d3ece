"""How `make bench` is put together and reported: sections, required keys, outputs.

Each part of the bench is a `Section`: it runs (`run(quick)` -> a dict stored under its
name in latest.json), names the ratios it owns (median and min-max spread), and gives
its rows for the printed table, latest.md and the README. bench/__main__.py lists the
sections in order; a new part is one more `Section` in that list.

latest.json is read by checks outside the repo: `REQUIRED` lists the dotted keys it must
carry. A key no section wrote is written as null and named in a warning, so a missing
part shows instead of silently dropping out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: (measure, askdoc, baseline (same run), ratio, target)
Row = tuple[str, str, str, str, str]

#: Keys latest.json must carry (dotted paths), and which part fills them.
REQUIRED: dict[str, str] = {
    "ratios.ingest_vs_xadd_baseline": "ingest (bench/http.py)",
    "ratios.page_read_vs_baseline": "page reads (bench/http.py)",
    "ratios.vote_vs_baseline": "votes (bench/http.py)",
    "ratios.fanout_vs_raw_loop": "fan-out (bench/fanout.py)",
    "ratios.fanout_vs_celery": "fan-out (bench/fanout.py)",
    "ratios.fanout_2_replicas_vs_1": "fan-out scale-out (bench/fanout.py)",
    "ratios.match_1m_speedup_vs_scan": "matching (bench/matching.py)",
    "ratios.match_1m_vs_10k_time": "matching (bench/matching.py)",
    "sse.connections": "live streams (bench/sse.py)",
    "sse.kib_per_connection": "live streams (bench/sse.py)",
    "sse.p99_ms": "live streams (bench/sse.py)",
}

#: Targets of the ratios, for the chart (lower is better for the *_time ones).
TARGETS: dict[str, float] = {
    "ingest_vs_xadd_baseline": 0.7,
    "page_read_vs_baseline": 0.8,
    "page_html_vs_baseline": 0.5,
    "vote_vs_baseline": 0.7,
    "fanout_vs_raw_loop": 1.0,
    "fanout_vs_celery": 3.0,
    "match_1m_speedup_vs_scan": 100.0,
    "match_1m_vs_10k_time": 2.0,
}


@dataclass(frozen=True)
class Section:
    """One part of the bench: what it runs, the ratios it owns, how it reads in a table."""

    name: str
    title: str
    run: Callable[[bool], dict[str, Any]]
    #: result -> {ratio name: {"median", "min", "max"} or a plain number}
    ratios: Callable[[Mapping[str, Any]], Mapping[str, Any]] = field(default=lambda _: {})
    rows: Callable[[Mapping[str, Any]], list[Row]] = field(default=lambda _: [])


def collect_ratios(
    sections: list[Section], results: Mapping[str, Any]
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Every section's ratios: medians, and [min, max] where the section measured a spread."""
    ratios: dict[str, float] = {}
    spreads: dict[str, list[float]] = {}
    for section in sections:
        if section.name not in results:
            continue
        for name, value in section.ratios(results[section.name]).items():
            if isinstance(value, Mapping):
                ratios[name] = value["median"]
                spreads[name] = [value["min"], value["max"]]
            else:
                ratios[name] = value
    return ratios, spreads


def missing_keys(results: dict[str, Any]) -> list[str]:
    """Fill every required key no section wrote with null; the keys filled so."""
    missing = []
    for dotted in REQUIRED:
        node = results
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if node.get(leaf) is None:
            node[leaf] = None
            missing.append(dotted)
    return missing


def ratio_text(results: Mapping[str, Any], name: str, target: str = "") -> str:
    """`0.82x (0.78-0.85)`: a ratio with its spread, as the table prints it."""
    value = results["ratios"].get(name)
    if value is None:
        return "not measured"
    low_high = results.get("ratio_spreads", {}).get(name)
    text = f"{value:.2f}x"
    if low_high:
        text += f" ({low_high[0]:.2f}-{low_high[1]:.2f})"
    return f"{text} (target {target})" if target else text


def all_rows(sections: list[Section], results: Mapping[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for section in sections:
        if section.name in results:
            rows.extend(section.rows({**results[section.name], "_all": results}))
    return rows


def markdown(sections: list[Section], results: Mapping[str, Any]) -> str:
    """The figures as a Markdown table for the README."""
    lines = ["| measure | askdoc | baseline (same run) | ratio |", "|---|---|---|---|"]
    for measure, askdoc, baseline, ratio, _target in all_rows(sections, results):
        lines.append(f"| {measure} | {askdoc} | {baseline} | {ratio} |")
    mach = results["machine"]
    lines.append("")
    lines.append(
        f"Measured by `make bench` on {mach['cores']} cores ({mach['cpu']}), {mach['redis']}. "
        "Each figure is the median of short runs alternating askdoc and its baseline; "
        "(low-high) is the spread over those runs."
    )
    return "\n".join(lines)


def update_readme(text: str) -> None:
    """Replace the README's benchmark section with the latest figures."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    content = readme.read_text()
    if start in content and end in content:
        head, rest = content.split(start, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(f"{head}{start}\n{text}\n{end}{tail}")


def chart(results: Mapping[str, Any], path: Path) -> None:
    """A PNG of the ratios (with their spreads) against their targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = {n: v for n, v in results["ratios"].items() if v}
    if not ratios:  # e.g. `--only sse`: no ratio to draw
        return
    spreads = results.get("ratio_spreads", {})
    names = list(ratios)
    values = [ratios[n] for n in names]
    low = [ratios[n] - spreads[n][0] if n in spreads else 0 for n in names]
    high = [spreads[n][1] - ratios[n] if n in spreads else 0 for n in names]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.5))
    ax.barh(names, values, xerr=[low, high], color="#4c72b0", label="measured (min-max)")
    marked = [n for n in names if n in TARGETS]
    ax.scatter(
        [TARGETS[n] for n in marked], marked, color="#dd5555", marker="|", s=400, label="target"
    )
    ax.set_xscale("log")
    ax.set_xlabel("ratio (log scale); *_time: lower is better")
    ax.set_title(f"askdoc benchmarks, same-run baselines ({results['machine']['cores']} cores)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
