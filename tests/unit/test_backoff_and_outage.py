"""The shared retry pauses and the consumers' one-line-each-way outage log."""

from __future__ import annotations

import time

import pytest
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.backoff import Backoff
from shared.outage import RedisOutage


def test_pauses_double_up_to_the_cap_and_start_again_after_a_reset() -> None:
    longest = Backoff(0.5, 4.0, unit_random=lambda: 1.0)
    assert [longest.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    longest.reset()
    assert longest.next() == 0.5


def test_each_pause_is_drawn_between_half_and_all_of_its_step() -> None:
    shortest = Backoff(1.0, 8.0, unit_random=lambda: 0.0)
    assert [shortest.next() for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]
    drawn = Backoff(1.0, 1.0)
    assert all(0.5 <= drawn.next() <= 1.0 for _ in range(200))


def test_a_first_pause_above_the_cap_starts_at_the_cap_and_none_is_zero() -> None:
    assert Backoff(2.0, 1.0, unit_random=lambda: 1.0).next() == 1.0
    with pytest.raises(ValueError, match="positive"):
        Backoff(0.0, 1.0)


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends() -> None:
    outage = RedisOutage("questions")
    before = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        for _ in range(50):
            outage.failed(RedisConnectionError("Connection closed by server."))
        outage.worked(before)  # begun before the first failure: proves nothing
        outage.worked(time.monotonic())
        outage.worked(time.monotonic())
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("consumers_lost_redis", "warning"),
        ("consumers_have_redis_again", "info"),
    ]
    assert logs[0]["error"] == "ConnectionError: Connection closed by server."
    assert logs[1]["failed_calls"] == 50
    assert logs[1]["group"] == "questions"
