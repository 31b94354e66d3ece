"""The wire is the contract: JSON Schema snapshots, the AsyncAPI document, compatibility."""

from __future__ import annotations

import json
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from shared import events, streams
from shared.asyncapi import build, render

HERE = Path(__file__).parent
SNAPSHOTS = HERE / "snapshots"
ROOT = HERE.parents[1]
UPDATE = os.environ.get("ASKDOC_UPDATE_SNAPSHOTS") == "1"


def schema_path(event_type: type[events.Event]) -> Path:
    return SNAPSHOTS / f"{event_type.stream}.schema.json"


@pytest.mark.parametrize("event_type", events.EVENT_TYPES, ids=lambda e: e.__name__)
def test_event_schema_matches_its_reviewed_snapshot(event_type: type[events.Event]) -> None:
    current = json.dumps(event_type.model_json_schema(), indent=2, sort_keys=True) + "\n"
    path = schema_path(event_type)
    if UPDATE:
        path.write_text(current)
    assert path.exists(), (
        f"no snapshot for {event_type.__name__}: run with ASKDOC_UPDATE_SNAPSHOTS=1"
    )
    assert path.read_text() == current, (
        f"the wire schema of {event_type.__name__} changed: review it, then update the "
        "snapshot with ASKDOC_UPDATE_SNAPSHOTS=1 (breaking changes need a new schema_version)"
    )


def test_every_stream_has_exactly_one_event_type() -> None:
    assert set(events.EVENT_BY_STREAM) == set(streams.ALL)


def test_asyncapi_document_is_generated_from_the_code_and_current() -> None:
    path = ROOT / "docs" / "asyncapi.json"
    current = render()
    if UPDATE:
        path.write_text(current)
    assert path.read_text() == current, "docs/asyncapi.json is stale: run 'make asyncapi'"
    doc = json.loads(current)
    addresses = {c["address"] for c in doc["channels"].values()}
    assert set(streams.ALL) <= addresses


def test_asyncapi_documents_every_publisher_and_every_consumer_group() -> None:
    # FastStream keys channels by title and overwrites a repeated one with a warning: a
    # service that reads a stream it also writes (questions' moderation projections) lost
    # its consumer group from the document that way.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        doc = build()
    for service, published in streams.PUBLISHES.items():
        for stream in published:
            assert f"{service}:{stream}:published" in doc["channels"]
    for stream in (streams.ITEM_FLAGGED, streams.MODERATION_DECIDED):
        assert doc["channels"][f"questions:{stream}"]["address"] == stream


def sample_question() -> events.QuestionPosted:
    return events.QuestionPosted(
        correlation_id="req-1",
        producer="questions",
        question_id="q1",
        title="Is there a treatment for facial asymmetry?",
        body="My face is asymmetrical.",
        topics=["facial-asymmetry"],
        specialties=["plastic-surgery"],
        location=events.Location(city="Los Angeles", state="CA", zip=None, lat=34.05, lon=-118.24),
        asker_id="p1",
    )


def test_wire_form_is_one_plain_json_field_valid_against_the_schema() -> None:
    wire = sample_question().to_wire()
    assert list(wire) == ["__data__"]
    document = json.loads(wire["__data__"])
    schema = json.loads(schema_path(events.QuestionPosted).read_text())
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())
    assert document["event_type"] == "question-posted"
    assert document["schema_version"] == 1


def test_old_consumers_accept_events_grown_by_optional_fields() -> None:
    document = json.loads(sample_question().to_wire()["__data__"])
    document["added_later"] = {"anything": True}
    parsed = events.QuestionPosted.model_validate_json(json.dumps(document))
    assert parsed.question_id == "q1"


def test_a_new_schema_version_is_told_apart_not_misread() -> None:
    document = json.loads(sample_question().to_wire()["__data__"])
    document["schema_version"] = 2
    with pytest.raises(ValidationError):
        events.QuestionPosted.model_validate_json(json.dumps(document))


def test_events_are_frozen_and_carry_the_envelope() -> None:
    event = sample_question()
    with pytest.raises(ValidationError):
        event.question_id = "other"  # type: ignore[misc]
    assert event.occurred_at.tzinfo is not None
    assert event.occurred_at <= datetime.now(UTC)
    for event_type in events.EVENT_TYPES:
        fields = event_type.model_fields
        for name in (
            "event_id",
            "event_type",
            "schema_version",
            "occurred_at",
            "correlation_id",
            "producer",
        ):
            assert name in fields, f"{event_type.__name__} lacks {name}"
            assert fields[name].description, f"{event_type.__name__}.{name} has no description"
        assert event_type.__doc__
