"""`make bench`: every figure beside a baseline measured in the same run.

Writes bench/results/latest.json, latest.md and latest.png and prints a table.
`python -m bench --quick` runs smaller sizes (a smoke run); `--only http,matching` runs
some sections (the file then carries only theirs, the missing keys as null).

Sections are listed in SECTIONS (bench/report.py says what one is); a new part of the
bench is one more entry. Each section stores its result under its name; its ratios go
to `ratios` (medians) and `ratio_spreads` ([min, max] over alternating runs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import fanout, http, matching, sse
from bench.common import machine
from bench.report import (
    REQUIRED,
    Section,
    all_rows,
    chart,
    collect_ratios,
    markdown,
    missing_keys,
    update_readme,
)

RESULTS = Path(__file__).parent / "results"
console = Console()

#: In the order they run. Hook for the rest of issue 14: fan-out scale-out
#: (`ratios.fanout_2_replicas_vs_1`, from bench/fanout.py's `ratios`) slots in here and in
#: bench/report.py's REQUIRED.
SECTIONS: list[Section] = [http.SECTION, fanout.SECTION, matching.SECTION, sse.SECTION]


def table(sections: list[Section], results: dict[str, Any]) -> Table:
    """The figures side by side with their baselines."""
    t = Table(title="askdoc benchmarks (same-run baselines; median (min-max) of alternating runs)")
    for column in ("measure", "askdoc", "baseline", "ratio", "target"):
        t.add_column(column)
    for row in all_rows(sections, results):
        t.add_row(*row)
    return t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", default="", help="comma-separated section names")
    args = parser.parse_args()
    chosen = [s for s in SECTIONS if not args.only or s.name in args.only.split(",")]
    started = time.time()
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    for n, section in enumerate(chosen, 1):
        console.print(f"[bold]{n}/{len(chosen)} {section.title}[/]")
        began = time.time()
        results[section.name] = section.run(args.quick)
        results[section.name]["seconds"] = round(time.time() - began, 1)
    results["ratios"], results["ratio_spreads"] = collect_ratios(chosen, results)
    missing = missing_keys(results)
    results["seconds"] = round(time.time() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results, RESULTS / "latest.png")
    table_md = markdown(chosen, results)
    (RESULTS / "latest.md").write_text(table_md + "\n")
    if not args.quick and not args.only:
        update_readme(table_md)
    console.print(table(chosen, results))
    for key in missing:
        console.print(f"[yellow]not measured: {key} ({REQUIRED[key]})[/]")
    console.print(
        f"wrote {RESULTS / 'latest.json'}, latest.md and latest.png in {results['seconds']} s"
    )


if __name__ == "__main__":
    main()
