"""Matching a question to doctors: candidates from the directory's indexes, then the rules."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any, Protocol

from shared import geo
from shared.events import QuestionPosted

from ..directory.domain import DoctorRow
from ..settings import NotifySettings
from . import batch
from .domain import (
    Candidate,
    Match,
    MatchPolicy,
    RingSearch,
    escalation_matches,
    match_by_rating,
    match_doctors,
)


class DoctorIndex(Protocol):
    """What matching reads of the directory: its indexes and the candidates' rows."""

    async def near(
        self, specialties: Sequence[str], lat: float, lon: float, radius_km: float, count: int
    ) -> tuple[dict[str, list[str]], bool]:
        """Per doctor, their specialties within `radius_km`; and whether any was cut off."""
        ...

    async def best_rated(self, specialties: Sequence[str], count: int) -> dict[str, list[str]]:
        """Per doctor, the given specialties under which they are among the best rated."""
        ...

    async def rows(self, doctor_ids: Sequence[str]) -> dict[str, DoctorRow]:
        """Matching data of many doctors (missing ones left out)."""
        ...

    async def match_batch(
        self, questions: Sequence[dict[str, Any]], policy: dict[str, Any], rings: dict[str, Any]
    ) -> list[tuple[str, str]]:
        """Per question, its matches (JSON) and the matched doctors' {tz, prefs} (JSON)."""
        ...

    async def near_batch(
        self, searches: Sequence[tuple[Sequence[str], float, float, float, int]]
    ) -> list[list[list[str]]]:
        """Per (specialties, lat, lon, radius_km, count), per specialty: the nearest ids."""
        ...

    async def text_rows(self, doctor_ids: Sequence[str]) -> dict[str, batch.Row | None]:
        """Each doctor's row for the batch search (None for one gone)."""
        ...


class FrozenMatches(Protocol):
    """Where a question's first matches are kept."""

    async def frozen(self, question_id: str) -> str | None:
        """The matches stored earlier (JSON), or None."""
        ...

    async def freeze(self, question_id: str, matches_json: str, ttl_s: int) -> str:
        """Store the matches unless some are stored; the stored ones."""
        ...


Matched = tuple[list[Match], dict[str, DoctorRow]]


class Matcher:
    """Chooses the doctors a question alerts, the same ones on every redelivery."""

    def __init__(self, index: DoctorIndex, frozen: FrozenMatches, settings: NotifySettings) -> None:
        self.index = index
        self.frozen = frozen
        self.settings = settings
        self.policy = MatchPolicy(cap=settings.match_cap, min_matches=settings.match_min)
        self.rings = RingSearch(
            first_km=settings.first_search_km,
            limit_km=settings.max_radius_km,
            first_count=settings.geo_search_count,
            max_count=settings.geo_search_max,
        )

    async def matches_for(self, event: QuestionPosted) -> Matched:
        """The question's matches and their rows: frozen on the first delivery, reused after."""
        qid = event.question_id
        stored = await self.frozen.frozen(qid)
        if stored is not None:
            # A redelivery: alert exactly the doctors chosen the first time.
            return await self._decoded(stored)
        matches, rows = await self.search(event)
        encoded = json.dumps([asdict(m) for m in matches])
        kept = await self.frozen.freeze(qid, encoded, self.settings.dedupe_ttl_s)
        if kept != encoded:
            return await self._decoded(kept)
        return matches, rows

    async def match_batch(self, events: Sequence[QuestionPosted]) -> list[tuple[str, str]]:
        """Match many questions in one call to the directory, by the rules of `search`.

        Per question: its matches as JSON (as they are frozen) and the matched doctors'
        {tz, prefs} as JSON, both left encoded, so Python does no work per doctor.
        """
        questions: list[dict[str, Any]] = []
        for event in events:
            question: dict[str, Any] = {
                "sp": list(dict.fromkeys(event.specialties)),
                "ex": event.asker_id,
            }
            if event.location is not None:
                question["lat"], question["lon"] = event.location.lat, event.location.lon
            questions.append(question)
        policy = {
            "cap": self.policy.cap,
            "min_matches": self.policy.min_matches,
            "widen": list(self.policy.widen_factors),
            "band_km": self.policy.distance_band_km,
        }
        rings = {
            "first_km": self.rings.first_km,
            "limit_km": self.rings.limit_km,
            "first_count": self.rings.first_count,
            "max_count": self.rings.max_count,
            "widen": self.rings.widen_factor,
            "deepen": self.rings.deepen_factor,
        }
        if self.settings.match_in_replica:
            if not questions:
                return []
            return await batch.match_batch(self.index, questions, self.policy, self.rings)
        return await self.index.match_batch(questions, policy, rings)

    async def first_alerted(self, question_id: str) -> set[str]:
        """The doctors the question's first matching chose."""
        stored = await self.frozen.frozen(question_id)
        return {m["doctor_id"] for m in json.loads(stored)} if stored else set()

    async def decoded(self, raw: str) -> Matched:
        """Matches stored as JSON, with the rows of the doctors still in the directory."""
        return await self._decoded(raw)

    async def next_ring(
        self, event: QuestionPosted, alerted: set[str], escalation: int, waited: str
    ) -> Matched:
        """An escalation round's doctors: the nearest ring holding matching doctors not yet
        alerted, searched outwards from the asker (best rated first without a location)."""
        specialties = list(dict.fromkeys(event.specialties))
        skip = alerted | {event.asker_id}
        # The nearest ones per specialty were alerted already: fetch past them.
        count = min(self.settings.geo_search_count + len(skip), self.settings.geo_search_max)
        cap = self.policy.cap
        if event.location is None:
            found = await self.index.best_rated(specialties, count)
            rated = await self.index.rows([d for d in found if d not in skip])
            candidates = [
                Candidate(d, tuple(found[d]), 0.0, 0.0, row.rating, row.review_count)
                for d, row in rated.items()
            ]
            chosen = match_by_rating(specialties, candidates, self.policy)
            return [replace(m, escalation=escalation, waited=waited) for m in chosen], rated
        lat, lon = event.location.lat, event.location.lon
        current = self.rings.first()
        rows: dict[str, DoctorRow] = {}
        while True:
            found, _ = await self.index.near(specialties, lat, lon, current.radius_km * 1.01, count)
            rows.update(
                await self.index.rows([d for d in found if d not in rows and d not in skip])
            )
            candidates = [
                Candidate(
                    doctor_id=d,
                    specialties=tuple(found[d]),
                    distance_km=geo.haversine_km(lat, lon, row.lat, row.lon),
                    radius_km=row.radius_km,
                    rating=row.rating,
                    review_count=row.review_count,
                )
                for d in found
                if d not in skip and (row := rows.get(d)) is not None
            ]
            matches = escalation_matches(
                specialties, candidates, current.radius_km, cap, escalation, waited
            )
            if matches or current.at_limit:
                return matches, rows
            radius = min(current.radius_km * self.rings.widen_factor, self.rings.limit_km)
            current = replace(current, radius_km=radius, at_limit=radius >= self.rings.limit_km)

    async def _decoded(self, raw: str) -> Matched:
        matches = [Match(**m) for m in json.loads(raw)]
        return matches, await self.index.rows([m.doctor_id for m in matches])

    async def search(self, event: QuestionPosted) -> Matched:
        """Candidates from the specialty indexes (never a scan of all doctors), then the rules."""
        specialties = list(dict.fromkeys(event.specialties))
        if event.location is None:
            # No place to measure from: the best rated doctors of the specialties.
            found = await self.index.best_rated(specialties, self.settings.geo_search_count)
            rated = await self.index.rows(list(found))
            candidates = [
                Candidate(d, tuple(found[d]), 0.0, 0.0, row.rating, row.review_count)
                for d, row in rated.items()
                if d != event.asker_id
            ]
            return match_by_rating(specialties, candidates, self.policy), rated
        return await search_rings(
            self.index,
            self.rings,
            self.policy,
            specialties,
            event.location.lat,
            event.location.lon,
            exclude=event.asker_id,
        )


async def search_rings(
    index: DoctorIndex,
    rings: RingSearch,
    policy: MatchPolicy,
    specialties: list[str],
    lat: float,
    lon: float,
    exclude: str | None = None,
) -> Matched:
    """The outward ring search around (lat, lon): matches and the rows it fetched."""
    current = rings.first()
    rows: dict[str, DoctorRow] = {}
    while True:
        # Redis measures on a slightly larger sphere than shared.geo; the margin keeps
        # a doctor right at the edge from being lost before the rules measure them.
        found, truncated = await index.near(
            specialties, lat, lon, current.radius_km * 1.01, current.count
        )
        # Each ring fetches only the doctors the inner rings did not.
        rows.update(await index.rows([d for d in found if d not in rows]))
        candidates = [
            Candidate(
                doctor_id=d,
                specialties=tuple(found[d]),
                distance_km=distance,
                radius_km=row.radius_km,
                rating=row.rating,
                review_count=row.review_count,
            )
            for d in found
            if (row := rows.get(d)) is not None
            # a doctor asking is not alerted to their own question
            and d != exclude
            and (
                (distance := geo.haversine_km(lat, lon, row.lat, row.lon)) <= current.radius_km
                or current.at_limit
            )
        ]
        matches = match_doctors(specialties, candidates, policy)
        following = rings.next(current, matches, truncated, policy)
        if following is None:
            return matches, rows
        current = following
