"""Pure rules of the answers service: cleaning an answer, a doctor's card."""

from __future__ import annotations

import pytest

from services.answers.domain import (
    MAX_BODY,
    MAX_HEADLINE,
    MIN_BODY,
    InvalidAnswer,
    clean_answer,
    doctor_card,
    new_answer,
    new_answer_id,
)
from shared.events import DoctorCard

BODY = "Botox in the depressor muscles can soften the pull on the stronger side."

PROFILE = {
    "name": "Jon A. Perlman",
    "credentials": "MD, FACS",
    "specialties": ["plastic-surgery", "facial-plastic-surgery"],
    "location": {
        "city": "Beverly Hills",
        "state": "CA",
        "zip": "90210",
        "lat": 34.1,
        "lon": -118.4,
    },
    "radius_km": 50,
    "rating": 4.9,
    "review_count": 187,
    "email": "private@example.com",
    "status": "verified",
}


def test_clean_answer_keeps_text_and_drops_blank_headline() -> None:
    assert clean_answer("   ", f"  {BODY}\n") == (None, BODY)
    assert clean_answer(None, BODY) == (None, BODY)
    assert clean_answer(" Botox can help ", BODY) == ("Botox can help", BODY)


def test_clean_answer_normalises_to_nfc_and_strips_control_characters() -> None:
    headline, body = clean_answer(
        "Cafe\u0301\x07", "Re\u0301sume\u0301\x00 of the options: " + BODY
    )
    assert headline == "Caf\u00e9"
    assert body.startswith("R\u00e9sum\u00e9 of the options")
    assert "\x00" not in body


def test_markup_is_kept_as_literal_text() -> None:
    body = "<script>alert(1)</script> **not bold**, <b>not html</b> either."
    assert clean_answer(None, body) == (None, body)


@pytest.mark.parametrize(
    ("headline", "body", "message"),
    [
        (None, "\x00\x01\x02" * 10, "blank"),
        (None, "   \t\n   ", "blank"),
        (None, "x" * (MIN_BODY - 1) + "\x07" * 5, f"at least {MIN_BODY}"),
        (None, "x" * (MAX_BODY + 1), f"at most {MAX_BODY}"),
        ("h" * (MAX_HEADLINE + 1), BODY, f"at most {MAX_HEADLINE}"),
    ],
)
def test_clean_answer_rejects_bad_text(headline: str | None, body: str, message: str) -> None:
    with pytest.raises(InvalidAnswer, match=message):
        clean_answer(headline, body)


def test_card_takes_primary_specialty_and_practice_city_without_contact_data() -> None:
    card = doctor_card("doc-1", PROFILE)
    assert card == {
        "id": "doc-1",
        "name": "Jon A. Perlman",
        "credentials": "MD, FACS",
        "specialty": "plastic-surgery",
        "city": "Beverly Hills",
        "state": "CA",
        "rating": 4.9,
        "review_count": 187,
        "verified": True,
    }
    assert DoctorCard(**card).id == "doc-1"


def test_card_of_a_sparse_profile() -> None:
    card = doctor_card("doc-2", {"name": "A. Doctor", "specialties": [], "location": {}})
    assert card["specialty"] is None
    assert card["city"] is None and card["state"] is None
    assert card["credentials"] == ""
    assert card["rating"] is None and card["review_count"] == 0
    # A profile announced before verification existed has no status: not verified.
    assert card["verified"] is False


@pytest.mark.parametrize("status", ["pending", "suspended"])
def test_card_of_an_unverified_doctor_has_no_mark(status: str) -> None:
    assert doctor_card("doc-3", {**PROFILE, "status": status})["verified"] is False


def test_new_answer_shape() -> None:
    card = doctor_card("doc-1", PROFILE)
    answer = new_answer("a1", "q1", None, BODY, card, "2024-01-01T00:00:00+00:00")
    assert set(answer) == {"id", "question_id", "headline", "body", "created_at", "doctor"}
    assert answer["doctor"] == card


def test_answer_ids_are_time_ordered_and_unique() -> None:
    early, late = new_answer_id(1_000), new_answer_id(2_000)
    assert early.startswith("a") and early[:4] < late[:4]
    assert len({new_answer_id(5) for _ in range(100)}) == 100
