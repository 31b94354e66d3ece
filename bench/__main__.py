"""`make bench`: every figure beside a baseline measured in the same run.

Writes bench/results/latest.json and bench/results/latest.png and prints a table.
`python -m bench --quick` runs smaller sizes (for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import fanout, ingest, matching
from bench.common import machine

RESULTS = Path(__file__).parent / "results"
console = Console()


def table(results: dict[str, Any]) -> Table:
    """The figures side by side with their baselines."""
    t = Table(title="askdoc benchmarks (same-run baselines)")
    for column in ("measure", "askdoc", "baseline", "ratio", "target"):
        t.add_column(column)
    ing = results["ingest"]
    a, b = ing["askdoc_post_questions"], ing["baseline_fastapi_one_xadd"]
    t.add_row(
        "ingest POST /questions (wrk, 32 conns)",
        f"{a['requests_per_s']:.0f} req/s, p50 {a['p50_ms']:.1f} ms, p99 {a['p99_ms']:.1f} ms",
        f"bare FastAPI + 1 XADD: {b['requests_per_s']:.0f} req/s, p50 {b['p50_ms']:.1f}, p99 {b['p99_ms']:.1f}",
        f"{results['ratios']['ingest_vs_xadd_baseline']:.2f}x",
        ">= 0.7x",
    )
    fo = results["fanout"]
    t.add_row(
        f"fan-out through notify ({fo['doctors']:,} doctors)",
        f"{fo['notify_events_per_s']:.0f} events/s ({fo['alerts_per_event']:.1f} alerts/event)",
        f"raw XREADGROUP/XACK loop: {fo['raw_loop_per_s']:.0f}/s; redis-benchmark XADD: {fo['redis_benchmark_xadd_per_s']:.0f}/s",
        f"{results['ratios']['fanout_vs_raw_loop']:.2f}x",
        ">= 1.0x",
    )
    t.add_row(
        "same fan-out as Celery tasks (2 workers)",
        f"{fo['notify_events_per_s']:.0f} events/s",
        f"Celery on Redis: {fo['celery_events_per_s']:.0f} tasks/s",
        f"{results['ratios']['fanout_vs_celery']:.2f}x",
        ">= 3x",
    )
    lat = fo["latency"]
    t.add_row(
        f"post -> first alert at {lat['rate_per_s']:.0f}/s",
        f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms",
        f"1 XADD -> XREADGROUP hop: p50 {lat['hop']['p50_ms']:.2f} ms, p99 {lat['hop']['p99_ms']:.2f} ms",
        "",
        "",
    )
    m = results["matching"]
    for size in m["sizes"]:
        row = m["by_size"][str(size)]
        t.add_row(
            f"alert selection, {size:,} doctors",
            f"{row['index_ms']:.2f} ms",
            f"linear scan: {row['scan_ms']:.1f} ms",
            f"{row['scan_ms'] / row['index_ms']:.0f}x faster",
            ">= 100x at 1M",
        )
    t.add_row(
        "selection time 1M vs 10k",
        "",
        "",
        f"{results['ratios']['match_1m_vs_10k_time']:.2f}x",
        "< 2x",
    )
    t.add_row("directory memory per 100k doctors", f"{m['memory_mb_per_100k']:.1f} MB", "", "", "")
    return t


def markdown(results: dict[str, Any]) -> str:
    """The figures as a Markdown table for the README."""
    ing, fo, m, r = results["ingest"], results["fanout"], results["matching"], results["ratios"]
    a, b = ing["askdoc_post_questions"], ing["baseline_fastapi_one_xadd"]
    lat = fo["latency"]
    rows = [
        (
            "ingest: POST /questions, wrk 32 conns",
            f"{a['requests_per_s']:.0f} req/s, p50 {a['p50_ms']:.1f} ms, p99 {a['p99_ms']:.1f} ms",
            f"bare FastAPI + one XADD: {b['requests_per_s']:.0f} req/s, p50 {b['p50_ms']:.1f} ms, p99 {b['p99_ms']:.1f} ms",
            f"{r['ingest_vs_xadd_baseline']:.2f}x (target >= 0.7x)",
        ),
        (
            f"fan-out through notify, {fo['doctors']:,} doctors",
            f"{fo['notify_events_per_s']:.0f} events/s ({fo['alerts_per_event']:.1f} alerts each)",
            f"raw XREADGROUP/XACK loop {fo['raw_loop_per_s']:.0f}/s; redis-benchmark XADD {fo['redis_benchmark_xadd_per_s']:.0f}/s",
            f"{r['fanout_vs_raw_loop']:.2f}x (target >= 1.0x)",
        ),
        (
            "same fan-out as Celery tasks",
            f"{fo['notify_events_per_s']:.0f} events/s",
            f"Celery, 2 prefork workers: {fo['celery_events_per_s']:.0f} tasks/s",
            f"{r['fanout_vs_celery']:.2f}x (target >= 3x)",
        ),
        (
            f"post -> first alert at {lat['rate_per_s']:.0f}/s",
            f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms",
            f"one XADD -> XREADGROUP hop: p50 {lat['hop']['p50_ms']:.2f} ms, p99 {lat['hop']['p99_ms']:.2f} ms",
            "",
        ),
    ]
    for size in m["sizes"]:
        row = m["by_size"][str(size)]
        rows.append(
            (
                f"alert selection, {size:,} doctors",
                f"{row['index_ms']:.2f} ms",
                f"linear scan {row['scan_ms']:.1f} ms",
                f"{row['scan_ms'] / row['index_ms']:.0f}x faster",
            )
        )
    rows.append(
        (
            "selection time, largest vs 10k",
            "",
            "",
            f"{r['match_1m_vs_10k_time']:.2f}x (target < 2x)",
        )
    )
    rows.append(("directory memory per 100k doctors", f"{m['memory_mb_per_100k']:.1f} MB", "", ""))
    lines = ["| measure | askdoc | baseline (same run) | ratio |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    mach = results["machine"]
    lines.append("")
    lines.append(
        f"Measured by `make bench` on {mach['cores']} cores ({mach['cpu']}), {mach['redis']}."
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


def chart(results: dict[str, Any], path: Path) -> None:
    """A PNG of the ratios against their targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = results["ratios"]
    names = list(ratios)
    targets = {
        "fanout_vs_raw_loop": 1.0,
        "ingest_vs_xadd_baseline": 0.7,
        "match_1m_speedup_vs_scan": 100.0,
        "match_1m_vs_10k_time": 2.0,
        "fanout_vs_celery": 3.0,
    }
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.barh(names, [ratios[n] for n in names], color="#4c72b0", label="measured")
    ax.scatter(
        [targets[n] for n in names], names, color="#dd5555", marker="|", s=400, label="target"
    )
    ax.set_xscale("log")
    ax.set_xlabel("ratio (log scale); match_1m_vs_10k_time: lower is better")
    ax.set_title(f"askdoc benchmarks, same-run baselines ({results['machine']['cores']} cores)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    started = time.time()
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    console.print("[bold]1/3 ingest[/] (wrk against POST /questions and a bare FastAPI XADD)")
    results["ingest"] = ingest.run(seconds=4 if args.quick else 10)
    console.print("[bold]2/3 fan-out, latency, Celery[/]")
    results["fanout"] = fanout.run(quick=args.quick)
    console.print("[bold]3/3 matching scale[/]")
    results["matching"] = matching.run(quick=args.quick)
    m = results["matching"]["by_size"]
    largest = str(max(results["matching"]["sizes"]))
    results["ratios"] = {
        "fanout_vs_raw_loop": results["fanout"]["notify_events_per_s"]
        / results["fanout"]["raw_loop_per_s"],
        "ingest_vs_xadd_baseline": results["ingest"]["ratio"],
        "match_1m_speedup_vs_scan": m[largest]["scan_ms"] / m[largest]["index_ms"],
        "match_1m_vs_10k_time": m[largest]["index_ms"] / m["10000"]["index_ms"],
        "fanout_vs_celery": results["fanout"]["notify_events_per_s"]
        / results["fanout"]["celery_events_per_s"],
    }
    results["seconds"] = round(time.time() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results, RESULTS / "latest.png")
    table_md = markdown(results)
    (RESULTS / "latest.md").write_text(table_md + "\n")
    if not args.quick:
        update_readme(table_md)
    console.print(table(results))
    console.print(f"wrote {RESULTS / 'latest.json'} and latest.png in {results['seconds']} s")


if __name__ == "__main__":
    main()
