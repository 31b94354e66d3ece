"""Pure rules of verified doctors and escalation: NPI check, status moves, the next ring."""

from __future__ import annotations

import pytest

from services.notify.directory.domain import (
    is_verified,
    luhn_valid,
    npi_check_digit,
    npi_valid,
    nucc_code_valid,
    profile_view,
)
from services.notify.matching.domain import (
    Candidate,
    Match,
    escalation_matches,
    waited_text,
)


def test_the_cms_example_npi_passes_and_any_one_digit_change_fails() -> None:
    # CMS's worked example: 123456789 with the 80840 prefix gets check digit 3.
    assert npi_check_digit("123456789") == "3"
    assert npi_valid("1234567893")
    for i in range(10):
        for d in "0123456789":
            changed = "1234567893"[:i] + d + "1234567893"[i + 1 :]
            if changed != "1234567893":
                assert not npi_valid(changed), changed


@pytest.mark.parametrize("bad", ["", "123456789", "12345678931", "12345 7893", "abcdefghij"])
def test_an_npi_is_ten_digits(bad: str) -> None:
    assert not npi_valid(bad)


def test_luhn_alone_differs_from_the_npi_rule() -> None:
    # Without the 80840 prefix the check digit would be another one.
    assert luhn_valid("1234567897") and not npi_valid("1234567897")


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("208200000X", True),
        ("207YS0123X", True),
        ("208200000", False),
        ("208200000x", False),
        ("20820000XX", True),
        ("A08200000X", False),
    ],
)
def test_nucc_codes_have_their_shape(code: str, ok: bool) -> None:
    assert nucc_code_valid(code) is ok


def test_only_a_verified_profile_is_verified_and_the_card_says_so() -> None:
    base = {
        "id": "d",
        "name": "D",
        "credentials": "",
        "specialties": ["dermatology"],
        "location": {"city": "X", "state": "CA"},
        "radius_km": 50,
        "profile_version": 1,
        "updated_at": "2026-01-01T00:00:00+00:00",
    }
    assert not is_verified(base)
    assert profile_view(base, private=False)["status"] == "pending"
    for status, mark in (("pending", False), ("suspended", False), ("verified", True)):
        view = profile_view({**base, "status": status}, private=False)
        assert view["verified"] is mark and view["status"] == status


def cand(doctor_id: str, km: float, rating: float = 4.0) -> Candidate:
    return Candidate(doctor_id, ("dermatology",), km, 50.0, rating, 10)


def test_an_escalation_round_takes_the_nearest_in_the_ring_whatever_their_radius() -> None:
    found = [cand("far", 120.0), cand("near", 30.0), cand("outside", 400.0), cand("mid", 80.0)]
    chosen = escalation_matches(["dermatology"], found, 150.0, 2, 1, "24 h")
    assert [m.doctor_id for m in chosen] == ["near", "mid"]
    assert [m.rank for m in chosen] == [1, 2]
    assert all(m.escalation == 1 and m.widened for m in chosen)


def test_an_escalation_round_skips_other_specialties() -> None:
    other = Candidate("neuro", ("neurology",), 5.0, 50.0)
    assert escalation_matches(["dermatology"], [other], 150.0, 5, 1, "24 h") == []


def test_an_escalation_alert_says_why_in_words() -> None:
    m = Match("d", "dermatology", 120.0, 1, True, 270.0, escalation=1, waited="24 h")
    assert m.reason_text().startswith("no answer yet after 24 h; you are 120 km away")
    assert m.reason()["escalation"] == 1 and m.reason()["no_answer_after"] == "24 h"
    assert m.reason()["distance_km"] == 120.0
    first = Match("d", "dermatology", 12.0, 1, False, 50.0)
    assert "escalation" not in first.reason()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(86400, "24 h"), (172800, "48 h"), (5400, "1.5 h"), (600, "10 min"), (4, "4 s")],
)
def test_waited_text(seconds: float, text: str) -> None:
    assert waited_text(seconds) == text
