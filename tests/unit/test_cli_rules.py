"""The CLI's pure rules: retention detection, CSV row checks, replay safety, event lines."""

from __future__ import annotations

import json

import pytest
import typer

from askdoc_cli.context import human_ms, stream_name
from askdoc_cli.dlq import FIELD_LIMIT, Letter, parse_letter, replay_problem
from askdoc_cli.doctors import Rejected, Row, parse_row
from askdoc_cli.tail import decode_entry, key_ids, readable
from shared.events import DeadLetter, QuestionPosted
from shared.retention import behind_retention


def test_a_lag_larger_than_the_stream_means_unread_entries_were_trimmed() -> None:
    assert behind_retention(8, 1, "5-1", "9-0", "9-0") == (True, 7)


def test_a_lag_within_the_stream_is_not_behind() -> None:
    assert behind_retention(3, 5, "5-1", "5-0", "9-0") == (False, 0)


def test_without_lag_a_last_delivered_id_before_the_first_entry_is_behind() -> None:
    assert behind_retention(None, 2, "5-1", "7-0", "9-0") == (True, None)


def test_without_lag_deletions_after_the_first_entry_are_not_behind() -> None:
    assert behind_retention(None, 4, "5-1", "5-0", "9-0") == (False, None)


def test_an_emptied_stream_with_unread_entries_is_behind() -> None:
    assert behind_retention(None, 0, "5-1", None, "9-0") == (True, None)
    assert behind_retention(None, 0, "9-0", None, "9-0") == (False, None)


def test_short_and_full_stream_names_are_accepted() -> None:
    assert stream_name("vote-cast") == "askdoc.vote-cast"
    assert stream_name("askdoc.vote-cast") == "askdoc.vote-cast"
    with pytest.raises(typer.BadParameter):
        stream_name("votes")


def test_durations_read_well() -> None:
    assert [human_ms(v) for v in (5, 12_000, 184_000, 7_500_000)] == [
        "5ms",
        "12s",
        "3m04s",
        "2h05m",
    ]


def row(**cells: str) -> dict[str, str]:
    base = {
        "id": "dr-a",
        "name": "Dr A",
        "credentials": "MD",
        "specialties": "dermatology; plastic-surgery",
        "zip": "90210",
        "city": "",
        "state": "",
        "lat": "",
        "lon": "",
        "radius_km": "40",
        "rating": "4.5",
        "review_count": "12",
        "email": "",
    }
    return {**base, **cells}


def test_a_good_row_becomes_a_profile_without_empty_fields() -> None:
    parsed = parse_row(2, row())
    assert isinstance(parsed, Row)
    assert parsed.doctor_id == "dr-a"
    assert parsed.profile == {
        "name": "Dr A",
        "credentials": "MD",
        "specialties": ["dermatology", "plastic-surgery"],
        "location": {"zip": "90210"},
        "radius_km": 40.0,
        "rating": 4.5,
        "review_count": 12,
    }


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ({"id": ""}, "missing id"),
        ({"name": " "}, "missing name"),
        ({"specialties": " ; "}, "missing specialties"),
        ({"zip": ""}, "missing location"),
        ({"zip": "", "city": "Los Angeles"}, "missing location"),
        ({"lat": "34.1"}, "both lat and lon"),
        ({"rating": "five"}, "rating 'five' is not a number"),
        ({"review_count": "1.5"}, "review_count"),
    ],
)
def test_bad_rows_are_rejected_locally(cells: dict[str, str], reason: str) -> None:
    parsed = parse_row(7, row(**cells))
    assert isinstance(parsed, Rejected)
    assert parsed.number == 7 and parsed.status is None
    assert reason in parsed.message


def test_city_state_and_coordinates_are_locations() -> None:
    city = parse_row(2, row(zip="", city="Los Angeles", state="CA"))
    assert isinstance(city, Row) and city.profile["location"] == {
        "city": "Los Angeles",
        "state": "CA",
    }
    point = parse_row(2, row(zip="", lat="34.05", lon="-118.24"))
    assert isinstance(point, Row) and point.profile["location"] == {"lat": 34.05, "lon": -118.24}


def letter_for(fields: dict[str, str], source: str = "askdoc.question-posted") -> Letter:
    dead = DeadLetter(
        correlation_id="c",
        producer="answers",
        source_stream=source,
        entry_id="1-0",
        group="answers",
        consumer="x",
        fields=fields,
        error="boom",
        delivery_count=5,
    )
    return parse_letter("9-0", dead.to_wire())


def question() -> QuestionPosted:
    return QuestionPosted(
        correlation_id="corr-1",
        producer="questions",
        question_id="q-1",
        title="A private title",
        body="A private body",
        topics=["botox"],
        specialties=["dermatology"],
        asker_id="p-1",
    )


def test_a_complete_dead_letter_can_be_replayed() -> None:
    letter = letter_for(question().to_wire())
    assert letter.delivery_count == 5 and letter.group == "answers"
    assert replay_problem(letter) is None


def test_a_truncated_entry_is_not_replayed() -> None:
    truncated = question().to_wire()["__data__"][:10] + "x" * FIELD_LIMIT
    problem = replay_problem(letter_for({"__data__": truncated[:FIELD_LIMIT]}))
    assert problem is not None and "truncated" in problem


def test_a_letter_naming_a_foreign_stream_is_not_replayed() -> None:
    problem = replay_problem(letter_for(question().to_wire(), source="some-other-key"))
    assert problem is not None and "not an askdoc event stream" in problem


def test_an_unreadable_letter_is_listed_not_replayed() -> None:
    letter = parse_letter("9-0", {"__data__": "{not json"})
    assert letter.unreadable and replay_problem(letter)


def test_event_lines_show_ids_not_personal_text() -> None:
    record = decode_entry("askdoc.question-posted", "5-0", question().to_wire())
    line = readable(record).plain
    assert (
        "question-posted" in line and "question_id=q-1" in line and "correlation_id=corr-1" in line
    )
    assert "private" not in line and "5-0" in line


def test_nested_ids_and_unknown_events_show_their_ids() -> None:
    assert ("doctor_id", "dr-1") in key_ids(
        {"event_type": "answer-posted", "answer_id": "a", "doctor": {"id": "dr-1"}}
    )
    assert key_ids({"event_type": "new-thing", "thing_id": "t", "event_id": "e"}) == [
        ("thing_id", "t")
    ]


def test_malformed_entries_are_shown_not_fatal() -> None:
    assert "error" in decode_entry("s", "1-0", {"x": "y"})
    assert "error" in decode_entry("s", "1-0", {"__data__": "[1]"})
    assert json.dumps(decode_entry("s", "1-0", {"__data__": "nope"}))
