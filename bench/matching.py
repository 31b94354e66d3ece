"""4. Matching scale: notify's alert selection at 10k, 100k and 1M doctors, beside a
linear scan over the same doctors; directory memory per 100k doctors."""

from __future__ import annotations

import asyncio
import random
import statistics
import subprocess
import time
from collections.abc import Mapping
from typing import Any

import zipcodes

from bench.common import JWT_SECRET, RedisServer
from bench.report import Row, Section, ratio_text
from services.notify.directory.domain import DoctorRow
from services.notify.matching import domain
from shared import geo
from shared.events import Location, QuestionPosted

SPECIALTIES = (
    "plastic-surgery",
    "dermatology",
    "facial-plastic-surgery",
    "procedural-dermatology",
    "oral-and-maxillofacial-surgery",
    "physician",
    "otolaryngology",
    "ophthalmology",
)
QUESTION_SPECIALTIES = [
    "plastic-surgery",
    "facial-plastic-surgery",
    "dermatology",
    "procedural-dermatology",
]


def _zip_points() -> list[tuple[float, float]]:
    points = []
    for z in zipcodes.list_all():
        if (
            z.get("lat")
            and z.get("long")
            and z.get("zip_code_type") == "STANDARD"
            and z.get("state") not in ("PR", "GU", "VI", "AS", "MP")
        ):
            points.append((float(z["lat"]), float(z["long"])))
    return points


def doctors(n: int, seed: int = 1) -> list[tuple[str, float, float, float, float, int, str]]:
    """n synthetic doctors at US ZIP centroids: id, lat, lon, radius, rating, reviews, specialty."""
    rng = random.Random(seed)
    points = _zip_points()
    out = []
    for i in range(n):
        lat, lon = rng.choice(points)
        lat += rng.uniform(-0.02, 0.02)
        lon += rng.uniform(-0.02, 0.02)
        out.append(
            (
                f"d{i}",
                lat,
                lon,
                float(rng.choice((25, 50, 80, 100, 150))),
                round(rng.uniform(3.0, 5.0), 1),
                rng.randint(0, 300),
                rng.choice(SPECIALTIES),
            )
        )
    return out


def _resp(*parts: str) -> bytes:
    encoded = [p.encode() for p in parts]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded)


def bulk_load(
    port: int, store: Any, rows: list[tuple[str, float, float, float, float, int, str]]
) -> None:
    """Write the directory keys notify reads (profile hash + GEO set) with redis-cli --pipe."""
    chunks = []
    for doctor_id, lat, lon, radius, rating, reviews, specialty in rows:
        row = DoctorRow(doctor_id, lat, lon, radius, rating, reviews, None)
        for command in store.bulk_index_commands(row, specialty):
            chunks.append(_resp(*command))
    subprocess.run(
        ["redis-cli", "-p", str(port), "--pipe"],
        input=b"".join(chunks),
        check=True,
        capture_output=True,
    )


def scan(
    rows: list[tuple[str, float, float, float, float, int, str]],
    lat: float,
    lon: float,
    policy: domain.MatchPolicy,
) -> list[domain.Match]:
    """The baseline: every doctor of the directory measured, no index."""
    wanted = set(QUESTION_SPECIALTIES)
    candidates = []
    for doctor_id, dlat, dlon, radius, rating, reviews, specialty in rows:
        if specialty in wanted:
            candidates.append(
                domain.Candidate(
                    doctor_id,
                    (specialty,),
                    geo.haversine_km(lat, lon, dlat, dlon),
                    radius,
                    rating,
                    reviews,
                )
            )
    return domain.match_doctors(QUESTION_SPECIALTIES, candidates, policy)


def run(quick: bool = False) -> dict[str, Any]:
    from services.notify.app import create_app
    from services.notify.settings import NotifySettings

    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    all_rows = doctors(max(sizes))
    rng = random.Random(9)
    askers = [p for p in rng.sample(_zip_points(), 40)]
    results: dict[str, Any] = {"sizes": sizes, "by_size": {}}
    for size in sizes:
        server = RedisServer().start()
        try:
            settings = NotifySettings(redis_url=server.url, jwt_secret=JWT_SECRET)  # type: ignore[arg-type]
            app = create_app(settings)
            parts = app.state.parts
            before = int(server.client().info("memory")["used_memory"])
            rows = all_rows[:size]
            bulk_load(server.port, parts.stores.directory, rows)
            used = int(server.client().info("memory")["used_memory"]) - before

            async def select_all(matcher: Any = parts.matcher) -> list[float]:
                timings = []
                for n, (lat, lon) in enumerate(askers):
                    event = QuestionPosted(
                        correlation_id="b",
                        producer="bench",
                        question_id=f"q{n}",
                        title="t",
                        body="b",
                        topics=["facial-asymmetry"],
                        specialties=QUESTION_SPECIALTIES,
                        location=Location(lat=lat, lon=lon),
                        asker_id="a",
                    )
                    started = time.perf_counter()
                    await matcher.search(event)
                    timings.append((time.perf_counter() - started) * 1000)
                await matcher.index.redis.aclose()
                return timings

            index_ms = asyncio.run(select_all())
            scan_ms = []
            for lat, lon in askers[: 5 if size >= 1_000_000 else 10]:
                started = time.perf_counter()
                scan(rows, lat, lon, parts.matcher.policy)
                scan_ms.append((time.perf_counter() - started) * 1000)
            results["by_size"][str(size)] = {
                "index_ms": statistics.median(index_ms),
                "index_p99_ms": max(index_ms),
                "scan_ms": statistics.median(scan_ms),
                "redis_bytes": used,
            }
            if size == 100_000:
                results["memory_mb_per_100k"] = used / 1e6
        finally:
            server.cleanup()
    return results


# --- how matching reads in latest.json and the table (bench/report.py) --------------------


def ratios(result: Mapping[str, Any]) -> dict[str, Any]:
    """Speed-up over the scan at the largest size, and how selection time grows 10k -> it."""
    by_size = result["by_size"]
    largest = by_size[str(max(result["sizes"]))]
    return {
        "match_1m_speedup_vs_scan": largest["scan_ms"] / largest["index_ms"],
        "match_1m_vs_10k_time": largest["index_ms"] / by_size["10000"]["index_ms"],
    }


def rows(result: Mapping[str, Any]) -> list[Row]:
    out: list[Row] = []
    for size in result["sizes"]:
        row = result["by_size"][str(size)]
        out.append(
            (
                f"alert selection, {size:,} doctors",
                f"{row['index_ms']:.2f} ms",
                f"linear scan {row['scan_ms']:.1f} ms",
                f"{row['scan_ms'] / row['index_ms']:.0f}x faster",
                ">= 100x at 1M",
            )
        )
    out.append(
        (
            "selection time, largest vs 10k",
            "",
            "",
            ratio_text(result["_all"], "match_1m_vs_10k_time", "< 2x"),
            "< 2x",
        )
    )
    out.append(
        ("directory memory per 100k doctors", f"{result['memory_mb_per_100k']:.1f} MB", "", "", "")
    )
    return out


SECTION = Section("matching", "matching scale", run, ratios, rows)


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=2))
