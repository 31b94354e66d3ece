"""`askdoc doctors import` against a fake notify: retries, error messages, bounded concurrency."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from askdoc_cli.doctors import ImportResult, Rejected, Row, import_rows, read_rows


def rows(n: int) -> list[Row]:
    return [
        Row(i + 2, f"dr-{i}", {"name": f"Dr {i}", "specialties": ["dermatology"]}) for i in range(n)
    ]


async def run(handler: object, n: int = 5, concurrency: int = 20) -> tuple[ImportResult, list[str]]:
    seen: list[str] = []

    def advance(outcome: Rejected | None) -> None:
        seen.append("rejected" if outcome else "ok")

    transport = httpx.MockTransport(handler)  # type: ignore[arg-type]
    result = await import_rows(rows(n), "http://notify", "tok", concurrency, advance, transport)
    return result, seen


async def test_rate_limited_and_unavailable_rows_are_retried() -> None:
    calls: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        doctor = request.url.path.rsplit("/", 1)[-1]
        calls[doctor] = calls.get(doctor, 0) + 1
        assert request.headers["authorization"] == "Bearer tok"
        if calls[doctor] == 1:
            status = 429 if doctor.endswith(("0", "2", "4")) else 503
            return httpx.Response(status, headers={"Retry-After": "0"}, json={})
        return httpx.Response(200, json=json.loads(request.content))

    result, seen = await run(handler)
    assert result.rejected == [] and result.token_refused is None
    assert seen == ["ok"] * 5 and all(c == 2 for c in calls.values())


async def test_the_services_error_message_is_reported_per_row() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("dr-1"):
            message = "unknown specialty 'astrology'"
            return httpx.Response(422, json={"error": {"code": "invalid", "message": message}})
        if request.url.path.endswith("dr-3"):
            return httpx.Response(400, text="plain failure")
        return httpx.Response(200, json={})

    result, seen = await run(handler)
    rejected = sorted(result.rejected, key=lambda r: r.number)
    assert [(r.number, r.doctor_id, r.status, r.message) for r in rejected] == [
        (3, "dr-1", 422, "unknown specialty 'astrology'"),
        (5, "dr-3", 400, "plain failure"),
    ]
    assert seen.count("rejected") == 2


async def test_a_refused_token_stops_the_import() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"code": "invalid_token", "message": "bad"}})

    result, _ = await run(handler, n=50, concurrency=2)
    assert result.token_refused == "bad"


async def test_requests_in_flight_stay_within_the_bound() -> None:
    in_flight = 0
    most = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.005)
        in_flight -= 1
        return httpx.Response(200, json={})

    _, seen = await run(handler, n=60, concurrency=7)
    assert len(seen) == 60 and most == 7


def test_csv_rows_are_numbered_like_a_spreadsheet(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        "ID,Name,Specialties,Zip\n"
        "dr-a,A,dermatology,90210\n"
        "dr-b,B,,90210\n"
        "dr-a,A again,dermatology,90210\n"
        "dr-c,C,dermatology,90210,extra\n"
    )
    good, bad = read_rows(path)
    assert [r.doctor_id for r in good] == ["dr-a"]
    assert [(r.number, r.message) for r in bad] == [
        (3, "missing specialties"),
        (4, "duplicate id (first on row 2)"),
        (5, "more cells than columns"),
    ]
