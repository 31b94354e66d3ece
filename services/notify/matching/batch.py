"""The outward ring search of a whole batch of questions in lockstep, ranked in the replica
(`ASKDOC_MATCH_IN_REPLICA`; otherwise `directory/match_batch.lua` does it all in Redis).

`matching.service.search_rings` searches one question ring by ring, two round trips a
ring. Here every question of a batch takes its next ring together: one script call runs
the ring's GEOSEARCHes of all of them, one more reads the rows of the doctors met first,
and the rules run here, in the replica (`match_doctors`, `match_by_rating`: the same
functions the single search runs, so the two choose alike; the property test
tests/integration/test_notify_batch.py holds them, and the Lua, to it). Redis then does
only what needs its indexes; the ranking, most of the Lua's work, moves to the replicas,
which scale out, at the price of more CPU there than it took in Redis.

The matches are written as text the way the alerts' script and a redelivery read them:
Match's fields in order, numbers as cjson writes them (%.14g), strings as cjson escapes
them, fields at their defaults (located, no escalation) left out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.geo import EARTH_RADIUS_KM

from .domain import Candidate, Match, MatchPolicy, RingSearch, match_by_rating, match_doctors


@dataclass(frozen=True, slots=True)
class Row:
    """What the batch search reads of a doctor: the matching fields, zone and preferences."""

    lat: float
    lon: float
    radius_km: float
    rating: float
    review_count: int
    tz: str
    prefs: str  # JSON, as saved
    phi: float  # math.radians(lat), as shared.geo.haversine_km computes it
    cos_phi: float  # math.cos(phi)


class RingIndex(Protocol):
    """What the batch search reads of the directory."""

    async def near_batch(
        self, searches: Sequence[tuple[Sequence[str], float, float, float, int]]
    ) -> list[list[list[str]]]:
        """Per (specialties, lat, lon, radius_km, count), per specialty: the `count`
        nearest ids within the radius, nearest first."""
        ...

    async def best_rated(self, specialties: Sequence[str], count: int) -> dict[str, list[str]]:
        """Per doctor, the given specialties under which they are among the best rated."""
        ...

    async def text_rows(self, doctor_ids: Sequence[str]) -> dict[str, Row | None]:
        """Each doctor's row (None for one gone from the directory)."""
        ...


@dataclass(slots=True)
class _Search:
    """One located question's search: the ring it is at and the doctors it has measured."""

    specialties: list[str]
    lat: float
    lon: float
    exclude: str
    phi: float  # radians and cosine of lat, as shared.geo.haversine_km computes them
    cos_phi: float
    radius_km: float
    count: int
    at_limit: bool
    # doctor id -> distance (None: gone, or the asker), measured once however many rings
    seen: dict[str, float | None] = field(default_factory=dict)
    matches: list[Match] | None = None


async def match_batch(
    index: RingIndex,
    questions: Sequence[dict[str, Any]],
    policy: MatchPolicy,
    rings: RingSearch,
) -> list[tuple[str, str]]:
    """Per question ({sp, ex, lat?, lon?}): its matches as JSON text and the matched
    doctors' {tz, prefs} as JSON text."""
    rows: dict[str, Row | None] = {}
    first = rings.first()
    searches: dict[int, _Search] = {}
    rated: dict[int, list[Match]] = {}
    for i, q in enumerate(questions):
        if "lat" in q:
            phi = math.radians(q["lat"])
            searches[i] = _Search(
                q["sp"],
                q["lat"],
                q["lon"],
                q["ex"],
                phi,
                math.cos(phi),
                first.radius_km,
                first.count,
                first.at_limit,
            )
    for s in searches.values():
        if not s.specialties:
            s.matches = []  # nothing to search: every ring would find no one
    pending = [s for s in searches.values() if s.matches is None]
    while pending:
        replies = await index.near_batch(
            [(s.specialties, s.lat, s.lon, s.radius_km * 1.01, s.count) for s in pending]
        )
        found: list[dict[str, str]] = []
        truncated: list[bool] = []
        for s, per_slug in zip(pending, replies, strict=True):
            own: dict[str, str] = {}
            cut = False
            for slug, ids in zip(s.specialties, per_slug, strict=True):
                cut = cut or len(ids) >= s.count
                for doctor_id in ids:
                    # a doctor found under several of the question's specialties: the first
                    own.setdefault(doctor_id, slug)
            found.append(own)
            truncated.append(cut)
        fresh = list(dict.fromkeys(d for own in found for d in own if d not in rows))
        if fresh:
            rows.update(await index.text_rows(fresh))
        for s, own, cut in zip(pending, found, truncated, strict=True):
            _ring(s, own, cut, rows, policy, rings)
        pending = [s for s in pending if s.matches is None]
    for i, q in enumerate(questions):
        if i not in searches:
            rated[i] = await _by_rating(index, q, rows, policy, rings.first_count)
    out = []
    for i in range(len(questions)):
        search = searches.get(i)
        matches = search.matches if search is not None else rated[i]
        out.append((matches_text(matches or []), _doctors_text(matches or [], rows)))
    return out


def _ring(
    s: _Search,
    found: dict[str, str],
    truncated: bool,
    rows: dict[str, Row | None],
    policy: MatchPolicy,
    rings: RingSearch,
) -> None:
    """One ring of `s` (RingSearch.next with the rules): final matches, or the next ring."""
    seen = s.seen
    lon, phi, cos_phi = s.lon, s.phi, s.cos_phi
    sin, asin, sqrt, radians = math.sin, math.asin, math.sqrt, math.radians
    inside = 0
    members: list[tuple[str, str, float, Row]] = []
    for doctor_id, slug in found.items():
        if doctor_id in seen:
            distance = seen[doctor_id]
        else:
            row = rows.get(doctor_id)
            distance = None
            if row is not None and doctor_id != s.exclude:
                # shared.geo.haversine_km(s.lat, s.lon, row.lat, row.lon), operation for
                # operation (the same doubles), each end's radians and cosine computed once
                h = (
                    sin((row.phi - phi) / 2) ** 2
                    + cos_phi * row.cos_phi * sin(radians(row.lon - lon) / 2) ** 2
                )
                distance = 2 * EARTH_RADIUS_KM * asin(min(1.0, sqrt(h)))
            seen[doctor_id] = distance
        if distance is not None and (distance <= s.radius_km or s.at_limit):
            row = rows[doctor_id]
            assert row is not None
            members.append((doctor_id, slug, distance, row))
            if distance <= row.radius_km:
                inside += 1
    # Whether the ring's matches are complete (cap of them, none widened) is known from
    # the doctors in their own radius, unless they fill the cap but stop no widening
    # (cap < min_matches): then the ranking decides, as it does for the ring kept.
    matches: list[Match] | None = None
    if inside >= policy.min_matches or inside < policy.cap:
        complete = inside >= policy.cap
    else:
        matches = _rank(s, members, policy)
        complete = len(matches) >= policy.cap and not any(m.widened for m in matches)
    deeper = truncated and s.count < rings.max_count
    if complete or (s.at_limit and not deeper):
        s.matches = matches if matches is not None else _rank(s, members, policy)
    elif deeper:
        s.count = min(s.count * rings.deepen_factor, rings.max_count)
    else:
        s.radius_km = min(s.radius_km * rings.widen_factor, rings.limit_km)
        s.at_limit = s.radius_km >= rings.limit_km


def _rank(
    s: _Search, members: list[tuple[str, str, float, Row]], policy: MatchPolicy
) -> list[Match]:
    candidates = [
        Candidate(doctor_id, (slug,), distance, row.radius_km, row.rating, row.review_count)
        for doctor_id, slug, distance, row in members
    ]
    return match_doctors(s.specialties, candidates, policy)


async def _by_rating(
    index: RingIndex,
    q: dict[str, Any],
    rows: dict[str, Row | None],
    policy: MatchPolicy,
    count: int,
) -> list[Match]:
    """A question without a place: the best rated doctors of its specialties."""
    found = await index.best_rated(q["sp"], count)
    fresh = [d for d in found if d not in rows]
    if fresh:
        rows.update(await index.text_rows(fresh))
    candidates = []
    for doctor_id, slugs in found.items():
        row = rows.get(doctor_id)
        if row is not None and doctor_id != q["ex"]:
            candidates.append(
                Candidate(doctor_id, tuple(slugs), 0.0, 0.0, row.rating, row.review_count)
            )
    return match_by_rating(q["sp"], candidates, policy)


_ESCAPED = frozenset('"\\/')


def json_text(text: str) -> str:
    """A JSON string as cjson writes it: '/' and DEL escaped, other non-ASCII kept as is."""
    if text.isascii() and text.isprintable() and not _ESCAPED.intersection(text):
        return f'"{text}"'
    encoded = json.dumps(text, ensure_ascii=False)
    return encoded.replace("/", "\\/").replace("\x7f", "\\u007f")


def _number(x: float) -> str:
    return f"{x:.14g}"


def matches_text(matches: Sequence[Match]) -> str:
    """Matches as the alerts' script stores them and a redelivery compares them, byte for
    byte (as match_batch.lua writes them: either may have frozen them)."""
    parts = []
    for m in matches:
        head = (
            f'{{"doctor_id":{json_text(m.doctor_id)},"specialty":{json_text(m.specialty)},'
            f'"distance_km":{_number(m.distance_km)},"rank":{m.rank},'
            f'"widened":{"true" if m.widened else "false"},'
            f'"radius_used_km":{_number(m.radius_used_km)}'
        )
        parts.append(head + ("}" if m.located else ',"located":false}'))
    return "[" + ",".join(parts) + "]"


def _doctors_text(matches: Sequence[Match], rows: dict[str, Row | None]) -> str:
    parts = []
    for m in matches:
        row = rows[m.doctor_id]
        assert row is not None
        parts.append(
            f'{json_text(m.doctor_id)}:{{"tz":{json_text(row.tz)},"prefs":{row.prefs or "{}"}}}'
        )
    return "{" + ",".join(parts) + "}"


def parse_row(text: str) -> Row:
    """A row as text_rows.lua keeps it: the profile's fields joined by \\x1f."""
    lat_text, lon, radius_km, rating, reviews, tz, prefs = text.split("\x1f", 6)
    lat = float(lat_text)
    phi = math.radians(lat)
    return Row(
        lat=lat,
        lon=float(lon),
        radius_km=float(radius_km) if radius_km else 0.0,
        rating=float(rating) if rating else 0.0,
        review_count=math.floor(float(reviews)) if reviews else 0,
        tz=tz,
        prefs=prefs,
        phi=phi,
        cos_phi=math.cos(phi),
    )
