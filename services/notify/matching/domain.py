"""Matching doctors to a question: pure rules, unit-tested without Redis.

Standard library only: candidates in, ranked matches out; and the outward ring search's
next step, decided from what the last ring found.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Candidate:
    """A doctor from the directory, with the distance from the asker already computed."""

    doctor_id: str
    specialties: tuple[str, ...]
    distance_km: float
    radius_km: float
    rating: float = 0.0
    review_count: int = 0


@dataclass(frozen=True)
class MatchPolicy:
    """How many doctors a question alerts and how the search widens when too few are near."""

    cap: int = 10
    min_matches: int = 3
    widen_factors: tuple[float, ...] = (1.5, 2.0, 4.0)
    distance_band_km: float = 10.0

    def __post_init__(self) -> None:
        if self.cap < 0 or self.min_matches < 0:
            raise ValueError("cap and min_matches must be >= 0")
        if self.distance_band_km <= 0:
            raise ValueError("distance_band_km must be > 0")
        if any(f <= 1.0 for f in self.widen_factors) or list(self.widen_factors) != sorted(
            self.widen_factors
        ):
            raise ValueError("widen_factors must be ascending and each > 1")


@dataclass(frozen=True)
class Match:
    """A doctor chosen for a question, with what it takes to explain the alert."""

    doctor_id: str
    specialty: str
    distance_km: float
    rank: int
    widened: bool
    radius_used_km: float
    located: bool = True
    escalation: int = 0  # the escalation round that found the doctor (0: the first alert)
    waited: str = ""  # how long the question has gone unanswered, e.g. '24 h'

    def reason(self) -> dict[str, Any]:
        """The inbox item's `reason`: matched specialty, distance, rank and search radius."""
        if self.escalation:
            return {
                **self._first_reason(),
                "escalation": self.escalation,
                "no_answer_after": self.waited,
            }
        return self._first_reason()

    def _first_reason(self) -> dict[str, Any]:
        if not self.located:
            # The asker gave no location: matched on specialty alone, ranked by rating.
            return {
                "specialty": self.specialty,
                "distance_km": None,
                "rank": self.rank,
                "widened": False,
                "radius_km": None,
                "basis": "specialty_and_rating",
            }
        return {
            "specialty": self.specialty,
            "distance_km": self.distance_km,
            "rank": self.rank,
            "widened": self.widened,
            "radius_km": round(self.radius_used_km, 1),
        }

    def reason_text(self) -> str:
        """A one-line explanation, e.g. 'plastic-surgery · 12.3 km · rank 1'."""
        if self.escalation:
            where = (
                f"you are {self.distance_km:g} km away"
                if self.located
                else "you are among the best rated"
            )
            return f"no answer yet after {self.waited}; {where} · {self.specialty}"
        if not self.located:
            return f"{self.specialty} · rank {self.rank} · asker gave no location"
        text = f"{self.specialty} · {self.distance_km:g} km · rank {self.rank}"
        if self.widened:
            text += f" · search widened to {round(self.radius_used_km, 1):g} km"
        return text


def _first_shared(question_specialties: Sequence[str], doctor: Iterable[str]) -> str | None:
    """The first of the question's specialties that the doctor has, if any."""
    have = set(doctor)
    return next((s for s in question_specialties if s in have), None)


def _merge_duplicates(candidates: Iterable[Candidate]) -> list[Candidate]:
    """One candidate per doctor: specialties united, nearest distance and widest radius kept."""
    merged: dict[str, Candidate] = {}
    for c in candidates:
        seen = merged.get(c.doctor_id)
        if seen is None:
            merged[c.doctor_id] = c
            continue
        specialties = seen.specialties + tuple(
            s for s in c.specialties if s not in seen.specialties
        )
        merged[c.doctor_id] = Candidate(
            doctor_id=c.doctor_id,
            specialties=specialties,
            distance_km=min(seen.distance_km, c.distance_km),
            radius_km=max(seen.radius_km, c.radius_km),
            rating=max(seen.rating, c.rating),
            review_count=max(seen.review_count, c.review_count),
        )
    return list(merged.values())


def match_doctors(
    question_specialties: Sequence[str],
    candidates: Iterable[Candidate],
    policy: MatchPolicy,
) -> list[Match]:
    """The doctors to alert for a question, best first, widening the search if too few."""
    eligible: list[tuple[Candidate, str]] = []
    for c in _merge_duplicates(candidates):
        specialty = _first_shared(question_specialties, c.specialties)
        # A doctor of another specialty is never alerted, however near.
        if specialty is not None and math.isfinite(c.distance_km):
            eligible.append((c, specialty))

    chosen: dict[str, tuple[Candidate, str, bool, float]] = {}
    for c, specialty in eligible:
        if c.distance_km <= c.radius_km:
            chosen[c.doctor_id] = (c, specialty, False, c.radius_km)
    for factor in policy.widen_factors:
        if len(chosen) >= policy.min_matches:
            break
        for c, specialty in eligible:
            radius = c.radius_km * factor
            if c.doctor_id not in chosen and c.distance_km <= radius:
                chosen[c.doctor_id] = (c, specialty, True, radius)

    def rank_key(item: tuple[Candidate, str, bool, float]) -> tuple[int, float, int, float, str]:
        c = item[0]
        band = math.floor(c.distance_km / policy.distance_band_km)
        return (band, -c.rating, -c.review_count, c.distance_km, c.doctor_id)

    ranked = sorted(chosen.values(), key=rank_key)[: policy.cap]
    return [
        Match(
            doctor_id=c.doctor_id,
            specialty=specialty,
            distance_km=round(c.distance_km, 1),
            rank=rank,
            widened=widened,
            radius_used_km=radius,
        )
        for rank, (c, specialty, widened, radius) in enumerate(ranked, start=1)
    ]


def match_by_rating(
    question_specialties: Sequence[str],
    candidates: Iterable[Candidate],
    policy: MatchPolicy,
) -> list[Match]:
    """The doctors to alert for a question without a location: specialty only, best rated first.

    Distance and radius mean nothing without the asker's place, so every doctor of a
    matching specialty is eligible and the cap keeps the best rated (then most reviewed).
    """
    eligible: list[tuple[Candidate, str]] = []
    for c in _merge_duplicates(candidates):
        specialty = _first_shared(question_specialties, c.specialties)
        if specialty is not None:
            eligible.append((c, specialty))
    eligible.sort(key=lambda item: (-item[0].rating, -item[0].review_count, item[0].doctor_id))
    return [
        Match(
            doctor_id=c.doctor_id,
            specialty=specialty,
            distance_km=0.0,
            rank=rank,
            widened=False,
            radius_used_km=0.0,
            located=False,
        )
        for rank, (c, specialty) in enumerate(eligible[: policy.cap], start=1)
    ]


def waited_text(seconds: float) -> str:
    """How long a question has waited, as a reason says it: '24 h', '90 min', '5 s'."""
    if seconds >= 3600:
        return f"{seconds / 3600:g} h" if seconds % 3600 == 0 else f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds)} s"


def escalation_matches(
    question_specialties: Sequence[str],
    candidates: Iterable[Candidate],
    radius_km: float,
    cap: int,
    escalation: int,
    waited: str,
) -> list[Match]:
    """The doctors one escalation round alerts: of a matching specialty, within the ring
    (whatever their own radius: the question found no one nearer), nearest first.

    The caller leaves out every doctor alerted before; ties in a distance band go to the
    better rated, as for the first alert.
    """
    eligible: list[tuple[Candidate, str]] = []
    for c in _merge_duplicates(candidates):
        specialty = _first_shared(question_specialties, c.specialties)
        if specialty is not None and math.isfinite(c.distance_km) and c.distance_km <= radius_km:
            eligible.append((c, specialty))
    eligible.sort(key=lambda item: (item[0].distance_km, -item[0].rating, item[0].doctor_id))
    return [
        Match(
            doctor_id=c.doctor_id,
            specialty=specialty,
            distance_km=round(c.distance_km, 1),
            rank=rank,
            widened=True,
            radius_used_km=radius_km,
            escalation=escalation,
            waited=waited,
        )
        for rank, (c, specialty) in enumerate(eligible[:cap], start=1)
    ]


@dataclass(frozen=True)
class Ring:
    """One step of the outward search: doctors within `radius_km`, `count` per specialty."""

    radius_km: float
    count: int
    at_limit: bool


@dataclass(frozen=True)
class RingSearch:
    """How the directory is searched outwards from the asker, ring by ring.

    The cost then follows how many doctors are near, not how many there are: dense
    cities stop at the first ring, sparse areas widen. Rings are whole distance bands,
    so a doctor beyond the ring can never outrank one inside it; a ring whose nearest
    `count` were all taken is searched deeper before it widens.
    """

    first_km: float
    limit_km: float
    first_count: int
    max_count: int
    widen_factor: float = 3.0
    deepen_factor: int = 4

    def first(self) -> Ring:
        """The innermost ring."""
        return Ring(self.first_km, self.first_count, self.first_km >= self.limit_km)

    def next(
        self, ring: Ring, matches: Sequence[Match], truncated: bool, policy: MatchPolicy
    ) -> Ring | None:
        """The ring to search after `ring` found `matches`, or None when they are final."""
        complete = len(matches) >= policy.cap and not any(m.widened for m in matches)
        deeper = truncated and ring.count < self.max_count
        if complete or (ring.at_limit and not deeper):
            return None
        if deeper:
            return Ring(
                ring.radius_km, min(ring.count * self.deepen_factor, self.max_count), ring.at_limit
            )
        radius = min(ring.radius_km * self.widen_factor, self.limit_km)
        return Ring(radius, ring.count, radius >= self.limit_km)
