"""`askdoc doctors import`: bulk registration from a CSV by `PATCH /doctors/{id}` on notify;
`askdoc doctors verify`/`suspend` (`PUT /doctors/{id}/status`).

PATCH, not PUT: a re-import changes only the columns the file fills in, so it never
wipes what a doctor set themself (quiet hours, daily cap, webhook, or an e-mail the
file leaves empty); a doctor not yet in the directory is created.

Rows are checked locally first (a row without id, name, specialties or a location is
rejected without a request); the notify service is the judge of everything else
(specialty vocabulary, geocoding, ranges), and its error message is reported per row.
Row numbers are as in a spreadsheet: the header is row 1, the first doctor row 2.
"""

from __future__ import annotations

import asyncio
import csv
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

COLUMNS = (
    "id",
    "name",
    "credentials",
    "specialties",
    "zip",
    "city",
    "state",
    "lat",
    "lon",
    "radius_km",
    "rating",
    "review_count",
    "email",
    "npi",
    "taxonomy_code",
    "status",
)
REQUIRED_COLUMNS = ("id", "name", "specialties")
LOCATION_COLUMNS = ("zip", "city", "state", "lat", "lon")
RETRY_STATUSES = {429, 502, 503, 504}
MAX_ATTEMPTS = 4
# notify limits writes per user (admin too); its Retry-After says when to come back, and
# every window lets some rows through, so a rate-limited row keeps waiting its turn.
MAX_RATE_LIMITED_ATTEMPTS = 100
MAX_WAIT_S = 60.0


class CsvError(Exception):
    """The file as a whole cannot be imported (not the fault of one row)."""


class TokenRefused(Exception):
    """notify answered 401: no row can succeed with this token."""


@dataclass(frozen=True)
class Row:
    """A locally valid row: the doctor's id and the profile fields to PATCH."""

    number: int
    doctor_id: str
    profile: dict[str, Any]


@dataclass(frozen=True)
class Rejected:
    """A row that was not imported, and why (status None: rejected locally)."""

    number: int
    doctor_id: str
    message: str
    status: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The --json form."""
        return {
            "row": self.number,
            "id": self.doctor_id,
            "status": self.status,
            "message": self.message,
            "checked": "locally" if self.status is None else "by notify",
        }


def read_rows(path: Path) -> tuple[list[Row], list[Rejected]]:
    """The valid rows of a CSV file and the rows rejected locally."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise CsvError(
                    f"{path} has no column {', '.join(missing)}; expected {','.join(COLUMNS)}"
                )
            if not any(c in header for c in LOCATION_COLUMNS):
                raise CsvError(f"{path} has no location column ({', '.join(LOCATION_COLUMNS)})")
            reader.fieldnames = header
            rows: list[Row] = []
            rejected: list[Rejected] = []
            seen: dict[str, int] = {}
            for number, raw in enumerate(reader, start=2):
                parsed = parse_row(number, raw)
                if isinstance(parsed, Row) and parsed.doctor_id in seen:
                    parsed = Rejected(
                        number,
                        parsed.doctor_id,
                        f"duplicate id (first on row {seen[parsed.doctor_id]})",
                    )
                if isinstance(parsed, Row):
                    seen[parsed.doctor_id] = number
                    rows.append(parsed)
                else:
                    rejected.append(parsed)
            return rows, rejected
    except UnicodeDecodeError as exc:
        raise CsvError(f"{path} is not UTF-8 text: {exc}") from None
    except csv.Error as exc:
        raise CsvError(f"{path} is not valid CSV: {exc}") from None


def _cell(raw: dict[str | Any, Any], name: str) -> str | None:
    value = raw.get(name)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _number(raw: dict[str | Any, Any], name: str, kind: Callable[[str], Any]) -> Any:
    text = _cell(raw, name)
    if text is None:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} {text!r} is not a finite number")
    return value


def parse_row(number: int, raw: dict[str | Any, Any]) -> Row | Rejected:
    """Check one CSV row locally and build its profile, or say why it is rejected."""
    doctor_id = _cell(raw, "id") or ""
    if raw.get(None):
        return Rejected(number, doctor_id, "more cells than columns")
    problems = [f"missing {c}" for c in ("id", "name") if _cell(raw, c) is None]
    specialties = [s.strip() for s in (_cell(raw, "specialties") or "").split(";") if s.strip()]
    if not specialties:
        problems.append("missing specialties")
    try:
        location = _location(raw)
        radius = _number(raw, "radius_km", float)
        rating = _number(raw, "rating", float)
        reviews = _number(raw, "review_count", int)
    except ValueError as exc:
        problems.append(str(exc))
        location = {}
        radius = rating = reviews = None
    if problems:
        return Rejected(number, doctor_id, "; ".join(problems))
    profile: dict[str, Any] = {
        "name": _cell(raw, "name"),
        "specialties": specialties,
        "location": location,
    }
    optional = {
        "credentials": _cell(raw, "credentials"),
        "radius_km": radius,
        "rating": rating,
        "review_count": reviews,
        "email": _cell(raw, "email"),
        "npi": _cell(raw, "npi"),
        "taxonomy_code": _cell(raw, "taxonomy_code"),
        # notify lets only an admin set it; the import's own token is an admin's
        "status": (_cell(raw, "status") or "").lower() or None,
    }
    profile.update({k: v for k, v in optional.items() if v is not None})
    return Row(number, doctor_id, profile)


def _location(raw: dict[str | Any, Any]) -> dict[str, Any]:
    lat = _number(raw, "lat", float)
    lon = _number(raw, "lon", float)
    if (lat is None) != (lon is None):
        raise ValueError("give both lat and lon, or neither")
    zip_code, city, state = _cell(raw, "zip"), _cell(raw, "city"), _cell(raw, "state")
    has_city = city is not None and (state is not None or "," in city)
    if zip_code is None and not has_city and lat is None:
        raise ValueError("missing location (zip, city and state, or lat and lon)")
    found = {"zip": zip_code, "city": city, "state": state, "lat": lat, "lon": lon}
    return {k: v for k, v in found.items() if v is not None}


def error_message(response: httpx.Response) -> str:
    """The service's error message (JSON `{"error": {"message"}}`), else the raw reply."""
    try:
        body = response.json()
        message = body["error"]["message"]
        if isinstance(message, str) and message:
            return message
    except (ValueError, KeyError, TypeError):
        pass
    return (response.text.strip() or response.reason_phrase)[:300]


def _retry_after(response: httpx.Response | None, attempt: int) -> float:
    if response is not None:
        header = response.headers.get("retry-after", "")
        if header.isdigit():
            return min(float(header), MAX_WAIT_S)
    return min(0.25 * 2.0**attempt, 5.0)


async def put_profile(
    client: httpx.AsyncClient, base_url: str, row: Row, run_id: str
) -> Rejected | None:
    """PATCH one profile (idempotent, so retried on 429/5xx/transport errors); None on success."""
    url = f"{base_url.rstrip('/')}/doctors/{quote(row.doctor_id, safe='')}"
    # The request id becomes the events' correlation_id: one import can be traced in logs.
    headers = {"X-Request-ID": f"askdoc-import-{run_id}-row{row.number}"}
    attempt = 0
    while True:
        attempt += 1
        response: httpx.Response | None = None
        try:
            response = await client.patch(url, json=row.profile, headers=headers)
        except httpx.TransportError as exc:
            if attempt >= MAX_ATTEMPTS:
                return Rejected(row.number, row.doctor_id, f"notify unreachable: {exc}")
        else:
            if response.is_success:
                return None
            if response.status_code == 401:
                raise TokenRefused(error_message(response))
            limit = MAX_RATE_LIMITED_ATTEMPTS if response.status_code == 429 else MAX_ATTEMPTS
            if response.status_code not in RETRY_STATUSES or attempt >= limit:
                return Rejected(
                    row.number, row.doctor_id, error_message(response), response.status_code
                )
        await asyncio.sleep(_retry_after(response, attempt))


@dataclass
class ImportResult:
    """What an import did: the rows notify rejected, and why it stopped early (if it did)."""

    rejected: list[Rejected]
    run_id: str = ""
    token_refused: str | None = None


async def import_rows(
    rows: list[Row],
    base_url: str,
    token: str,
    concurrency: int,
    advance: Callable[[Rejected | None], None],
    transport: httpx.AsyncBaseTransport | None = None,
) -> ImportResult:
    """PATCH every row with at most `concurrency` requests in flight (`transport`: for tests)."""
    limit = asyncio.Semaphore(concurrency)
    result = ImportResult([], run_id=uuid.uuid4().hex[:12])
    headers = {"Authorization": f"Bearer {token}"}
    pool = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        headers=headers, timeout=15, limits=pool, transport=transport
    ) as client:

        async def one(row: Row) -> None:
            async with limit:
                if result.token_refused is not None:
                    return  # every further request would be refused too
                try:
                    outcome = await put_profile(client, base_url, row, result.run_id)
                except TokenRefused as exc:
                    result.token_refused = str(exc)
                    return
            if outcome is not None:
                result.rejected.append(outcome)
            advance(outcome)

        await asyncio.gather(*(one(row) for row in rows))
    return result


async def set_status(
    base_url: str, token: str, doctor_id: str, status: str
) -> tuple[int, dict[str, Any] | str]:
    """PUT a doctor's verification status; the reply's status and its card (or error)."""
    url = f"{base_url.rstrip('/')}/doctors/{quote(doctor_id, safe='')}/status"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(timeout=15) as client:
            response = await client.put(url, json={"status": status}, headers=headers)
    except httpx.HTTPError as exc:
        return 0, f"cannot reach notify at {base_url}: {exc}"
    if response.is_success:
        card: dict[str, Any] = response.json()
        return response.status_code, card
    return response.status_code, error_message(response)


async def check_reachable(base_url: str) -> str | None:
    """Why notify cannot be reached, or None (one request before hundreds)."""
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            await client.get(f"{base_url.rstrip('/')}/healthz")
    except httpx.HTTPError as exc:
        return f"cannot reach notify at {base_url}: {exc}"
    return None
