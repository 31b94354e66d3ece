"""The outward ring search, without Redis: the pure next-ring rule and the search loop."""

from __future__ import annotations

import asyncio
import json

from services.notify.matching.domain import Match, MatchPolicy, Ring, RingSearch
from services.notify.matching.service import Matched, Matcher, search_rings
from services.notify.settings import NotifySettings
from shared.events import Location, QuestionPosted
from tests.unit.notify_fakes import FakeDoctorIndex, FakeFrozenMatches

LA = (34.0522, -118.2437)
RINGS = RingSearch(first_km=10, limit_km=500, first_count=40, max_count=800)
POLICY = MatchPolicy(cap=3, min_matches=3)


def match(doctor_id: str, widened: bool = False) -> Match:
    return Match(doctor_id, "dermatology", 1.0, 1, widened, 50.0)


def test_a_full_cap_of_unwidened_matches_ends_the_search() -> None:
    full = [match("a"), match("b"), match("c")]
    assert RINGS.next(RINGS.first(), full, truncated=True, policy=POLICY) is None


def test_too_few_matches_widen_the_ring_threefold_up_to_the_limit() -> None:
    ring: Ring | None = RINGS.first()
    radii = []
    while ring is not None:
        ring = RINGS.next(ring, [match("a")], truncated=False, policy=POLICY)
        if ring is not None:
            radii.append((ring.radius_km, ring.at_limit))
    assert radii == [(30, False), (90, False), (270, False), (500, True)]


def test_a_ring_whose_nearest_were_all_taken_is_searched_deeper_first() -> None:
    ring = RINGS.next(RINGS.first(), [match("a")], truncated=True, policy=POLICY)
    assert ring == Ring(radius_km=10, count=160, at_limit=False)
    deepest = Ring(radius_km=10, count=800, at_limit=False)
    # At the deepest count a truncated ring widens instead.
    assert RINGS.next(deepest, [], truncated=True, policy=POLICY) == Ring(30, 800, False)


def test_widened_matches_do_not_end_the_search_before_the_limit() -> None:
    widened = [match("a", True), match("b", True), match("c", True)]
    assert RINGS.next(RINGS.first(), widened, truncated=False, policy=POLICY) == Ring(30, 40, False)
    at_limit = Ring(500, 40, True)
    assert RINGS.next(at_limit, widened, truncated=False, policy=POLICY) is None


def search(index: FakeDoctorIndex, exclude: str | None = None) -> Matched:
    return asyncio.run(search_rings(index, RINGS, POLICY, ["dermatology"], *LA, exclude=exclude))


def test_a_dense_city_stops_at_the_first_ring() -> None:
    index = FakeDoctorIndex()
    for i in range(5):
        index.add(f"near-{i}", ("dermatology",), LA[0] + 0.01 * i, LA[1])
    index.add("far", ("dermatology",), 36.7783, -119.4179)  # Fresno-ish, ~300 km
    matches, _ = search(index)
    assert [m.doctor_id for m in matches] == ["near-0", "near-1", "near-2"]
    assert index.searches == [(10 * 1.01, 40)]


def test_a_sparse_area_widens_until_doctors_are_found() -> None:
    index = FakeDoctorIndex()
    # ~180 km away, each with a 200 km radius: found by the 270 km ring.
    for i in range(3):
        index.add(f"sd-{i}", ("dermatology",), 32.7157 - 0.01 * i, -117.1611, radius_km=200)
    matches, rows = search(index)
    assert {m.doctor_id for m in matches} == {"sd-0", "sd-1", "sd-2"}
    assert [r for r, _ in index.searches] == [10 * 1.01, 30 * 1.01, 90 * 1.01, 270 * 1.01]
    assert set(rows) == {"sd-0", "sd-1", "sd-2"}


def test_the_asker_and_other_specialties_are_never_matched() -> None:
    index = FakeDoctorIndex()
    index.add("asker", ("dermatology",), *LA)
    index.add("neuro", ("neurology",), *LA)
    index.add("derm", ("dermatology",), *LA)
    matches, _ = search(index, exclude="asker")
    assert [m.doctor_id for m in matches] == ["derm"]


def question(qid: str) -> QuestionPosted:
    return QuestionPosted(
        correlation_id="c",
        producer="questions",
        question_id=qid,
        title="Botox for facial asymmetry?",
        body="body",
        topics=["botox"],
        specialties=["dermatology"],
        location=Location(lat=LA[0], lon=LA[1]),
        asker_id="p1",
    )


def test_matches_are_frozen_so_a_redelivery_alerts_the_same_doctors() -> None:
    settings = NotifySettings(jwt_secret="x" * 32, match_cap=3)  # type: ignore[call-arg]
    index, frozen = FakeDoctorIndex(), FakeFrozenMatches()
    index.add("first", ("dermatology",), *LA)
    matcher = Matcher(index, frozen, settings)
    first, _ = asyncio.run(matcher.matches_for(question("q1")))
    index.add("newcomer", ("dermatology",), *LA, rating=5.0)
    again, rows = asyncio.run(matcher.matches_for(question("q1")))
    assert [m.doctor_id for m in first] == [m.doctor_id for m in again] == ["first"]
    assert set(rows) == {"first"}
    assert [m["doctor_id"] for m in json.loads(frozen.stored["q1"])] == ["first"]
    fresh, _ = asyncio.run(matcher.matches_for(question("q2")))
    assert [m.doctor_id for m in fresh] == ["newcomer", "first"]


def test_an_escalation_finds_the_next_ring_beyond_the_doctors_already_alerted() -> None:
    settings = NotifySettings(jwt_secret="x" * 32, match_cap=2)  # type: ignore[call-arg]
    index = FakeDoctorIndex()
    index.add("alerted", ("dermatology",), *LA)
    index.add("pasadena", ("dermatology",), 34.1478, -118.1445)  # ~14 km
    index.add("neuro", ("neurology",), 34.1478, -118.1445)
    index.add("san-diego", ("dermatology",), 32.7157, -117.1611, radius_km=20)  # ~180 km
    matcher = Matcher(index, FakeFrozenMatches(), settings)
    found, rows = asyncio.run(matcher.next_ring(question("q1"), {"alerted"}, 1, "24 h"))
    assert [m.doctor_id for m in found] == ["pasadena"]
    assert found[0].reason_text().startswith("no answer yet after 24 h; you are 14")
    # The ring after that one, with both alerted: beyond the doctor's own 20 km radius.
    skip = {"alerted", "pasadena"}
    found, _ = asyncio.run(matcher.next_ring(question("q1"), skip, 2, "48 h"))
    assert [m.doctor_id for m in found] == ["san-diego"] and found[0].escalation == 2
    everyone = {"alerted", "pasadena", "san-diego"}
    assert asyncio.run(matcher.next_ring(question("q1"), everyone, 3, "72 h"))[0] == []
    assert "alerted" not in rows
