"""Stable figures on a busy machine: short runs that alternate askdoc and its baseline.

A single long run of askdoc followed by a single long run of its baseline measures two
different machines when other work comes and goes between them. Instead each contender
runs several short times, in an order that alternates round by round (A B, B A, A B ...),
so a slow spell hits both sides; each figure is the median of its runs, the spread is
min-max, and a ratio is the median of the per-round ratios (each taken from two runs
seconds apart), with the min-max of those too.

    result = alternate({"askdoc": run_askdoc, "baseline": run_baseline}, rounds=5)
    figure = result["askdoc"]["requests_per_s"]          # median
    low, high = result["askdoc"]["spread"]["requests_per_s"]
    ratio = paired_ratio(result, "askdoc", "baseline", "requests_per_s")

A contender is any callable returning a dict of numbers (wrk's figures, events/s, ...).
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

Figures = dict[str, float]
Contender = Callable[[], Figures]


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of some runs' values (and the values, in run order)."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": list(values),
    }


def summarise(runs: Sequence[Figures]) -> dict[str, Any]:
    """One contender's runs as medians, with a `spread` [min, max] per figure and the runs."""
    out: dict[str, Any] = {}
    keys = [k for k in runs[0] if isinstance(runs[0][k], int | float)]
    for key in keys:
        out[key] = statistics.median(r[key] for r in runs)
    out["spread"] = {k: [min(r[k] for r in runs), max(r[k] for r in runs)] for k in keys}
    out["runs"] = list(runs)
    return out


def alternate(
    contenders: Mapping[str, Contender],
    rounds: int = 5,
    warmup: bool = True,
    on_round: Callable[[int, str, Figures], None] | None = None,
) -> dict[str, Any]:
    """Run every contender once per round, rotating the order each round; summarise each.

    With `warmup`, each contender runs once first and that run is dropped (JIT-free
    Python still warms caches, connection pools and Redis's own structures).
    """
    names = list(contenders)
    if warmup:
        for name in names:
            contenders[name]()
    runs: dict[str, list[Figures]] = {n: [] for n in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            figures = contenders[name]()
            runs[name].append(figures)
            if on_round is not None:
                on_round(r, name, figures)
    result: dict[str, Any] = {n: summarise(runs[n]) for n in names}
    result["rounds"] = rounds
    return result


def paired_ratio(
    result: Mapping[str, Any], numerator: str, denominator: str, key: str = "requests_per_s"
) -> dict[str, Any]:
    """Median and min-max of round-by-round ratios numerator/denominator of figure `key`."""
    top = [run[key] for run in result[numerator]["runs"]]
    bottom = [run[key] for run in result[denominator]["runs"]]
    return spread([a / b for a, b in zip(top, bottom, strict=True)])


def fmt_spread(summary: Mapping[str, Any], key: str, unit: str = "", digits: int = 0) -> str:
    """`1234 req/s (1200-1300)`: a figure's median and its min-max."""
    low, high = summary["spread"][key]
    return f"{summary[key]:.{digits}f}{unit} ({low:.{digits}f}-{high:.{digits}f})"


# --- wrk, the HTTP load generator (a separate process) ---------------------------------

_WRK_SCRIPT = """
local bodies = {%(bodies)s}
local headers = {%(headers)s}
local method = "%(method)s"
local n = 0
request = function()
  n = n + 1
  local body = nil
  if #bodies > 0 then body = bodies[(n %% #bodies) + 1] end
  return wrk.format(method, nil, headers[(n %% #headers) + 1], body)
end
"""


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def _lua_headers(headers: Mapping[str, str]) -> str:
    return (
        "{"
        + ", ".join(f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items())
        + "}"
    )


def wrk(
    url: str,
    method: str = "GET",
    bodies: Sequence[str] = (),
    headers: Sequence[Mapping[str, str]] = ({},),
    seconds: float = 2,
    connections: int = 32,
    allow_errors: bool = False,
) -> Figures:
    """Load `url` from wrk for `seconds`; requests/s, p50/p99 ms, non-2xx/3xx count.

    Request n carries bodies[n % len] and headers[n % len], so a run can spread over
    several users (tokens) or alternate values (a vote up, then down). A run with any
    4xx/5xx answer raises unless `allow_errors`: a rate of refusals measures nothing.
    """
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is missing: apt-get install wrk (make bench installs it)")
    script = _WRK_SCRIPT % {
        "bodies": ", ".join(_lua_string(b) for b in bodies),
        "headers": ", ".join(_lua_headers(h) for h in headers),
        "method": method,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        out = subprocess.run(
            [
                binary,
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                handle.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        Path(handle.name).unlink(missing_ok=True)
    figures = parse_wrk(out)
    if figures["non_2xx"] and not allow_errors:
        raise RuntimeError(f"{method} {url}: {figures['non_2xx']:.0f} answers were 4xx/5xx")
    return figures


def parse_wrk(out: str) -> Figures:
    """wrk --latency output as figures."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"50%\s+([\d.]+\w+)", out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rps is None or p50 is None or p99 is None or total is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*?timeout (\d+)", out)
    return {
        "requests_per_s": float(rps.group(1)),
        "p50_ms": _ms(p50.group(1)),
        "p99_ms": _ms(p99.group(1)),
        "requests": float(total.group(1)),
        "non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "timeouts": float(errors.group(1)) if errors else 0.0,
    }


def _ms(text: str) -> float:
    number = re.match(r"[\d.]+", text)
    assert number is not None
    unit = text[number.end() :]
    return float(number.group(0)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]
