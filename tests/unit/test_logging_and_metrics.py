"""Request plumbing kept cheap: correlation ids, loggers and metric children."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Iterator

import pytest
import structlog

from shared.logging import get_logger, new_correlation_id
from shared.metrics import EVENTS_PUBLISHED, events_published


def test_a_new_correlation_id_is_a_random_uuid4_in_its_usual_text() -> None:
    ids = {new_correlation_id() for _ in range(1000)}
    assert len(ids) == 1000
    for cid in ids:
        parsed = uuid.UUID(cid)
        assert str(parsed) == cid
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


@pytest.fixture
def structlog_config() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def _configure(cache: bool, level: int = logging.INFO) -> None:
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=cache,
    )


def _events(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()]


def test_a_logger_keeps_its_methods_once_structlog_caches_it(
    structlog_config: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(cache=True)
    log = get_logger("t")
    log.info("first", n=1)
    log.debug("filtered out")
    log.info("second", n=2)
    assert "info" in vars(log) and "debug" in vars(log)
    assert _events(capsys) == ["first", "second"]


def test_a_logger_follows_a_new_configuration_when_structlog_does_not_cache(
    structlog_config: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(cache=False)
    log = get_logger("t")
    log.debug("filtered out")
    _configure(cache=False, level=logging.DEBUG)
    log.debug("now shown")
    assert "debug" not in vars(log)
    assert _events(capsys) == ["now shown"]


def test_events_published_is_the_counter_labels_gives() -> None:
    child = events_published("test-service", "test.stream")
    assert child is events_published("test-service", "test.stream")
    before = EVENTS_PUBLISHED.labels("test-service", "test.stream")._value.get()
    child.inc()
    assert EVENTS_PUBLISHED.labels("test-service", "test.stream")._value.get() == before + 1
