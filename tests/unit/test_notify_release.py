"""Unit tests for the notifier's rules added for the service: held releases, ids, no-location."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

import pytest

from services.notify.alerts.domain import (
    DeliveryDecision,
    HeldAlert,
    HoldReason,
    QuietHours,
    parse_quiet_hours,
    plan_release,
)
from services.notify.delivery.domain import (
    jittered,
    webhook_url_problem,
)
from services.notify.inbox.domain import (
    is_notification_id,
    item_view,
    moderated_subjects,
    new_item,
    new_notification_id,
    notification_id_floor,
)
from services.notify.matching.domain import (
    Candidate,
    MatchPolicy,
    match_by_rating,
)

NOW = datetime(2025, 6, 10, 15, 0, tzinfo=UTC)
NIGHT = QuietHours(time(22, 0), time(7, 0), "UTC")


def held(hold_id: str, at: datetime, reason: HoldReason = HoldReason.QUIET_HOURS) -> HeldAlert:
    return HeldAlert(hold_id, at, reason)


def test_quiet_hours_end_releases_held_alerts_one_by_one() -> None:
    morning = datetime(2025, 6, 10, 7, 0, tzinfo=UTC)
    alerts = [held("b", morning), held("a", morning)]
    plan = plan_release(alerts, quiet_hours=NIGHT, daily_cap=None, sent_today=0, now_utc=morning)
    assert [h.hold_id for h in plan.deliver] == ["a", "b"]
    assert plan.digest == () and plan.rehold == ()


def test_release_after_quiet_hours_respects_the_daily_cap() -> None:
    morning = datetime(2025, 6, 10, 7, 0, tzinfo=UTC)
    alerts = [held(f"h{i}", morning) for i in range(5)]
    plan = plan_release(alerts, quiet_hours=NIGHT, daily_cap=3, sent_today=1, now_utc=morning)
    assert [h.hold_id for h in plan.deliver] == ["h0", "h1"]
    assert [h.hold_id for h, _ in plan.rehold] == ["h2", "h3", "h4"]
    for _, decision in plan.rehold:
        assert decision.reason is HoldReason.DAILY_CAP
        assert decision.hold_until == datetime(2025, 6, 11, 7, 0, tzinfo=UTC)


def test_due_cap_held_alerts_go_out_as_one_digest_counted_once() -> None:
    midnight = datetime(2025, 6, 11, 0, 0, tzinfo=UTC)
    alerts = [held(f"c{i}", midnight, HoldReason.DAILY_CAP) for i in range(3)]
    later = held("later", midnight + timedelta(hours=1), HoldReason.QUIET_HOURS)
    plan = plan_release(
        [*alerts, later], quiet_hours=None, daily_cap=1, sent_today=0, now_utc=midnight
    )
    assert [h.hold_id for h in plan.digest] == ["c0", "c1", "c2"]
    # The digest used the day's only slot, so the other alert waits for tomorrow's digest.
    assert plan.deliver == ()
    [(h, decision)] = plan.rehold
    assert h.hold_id == "later" and decision.reason is HoldReason.DAILY_CAP


def test_digest_waits_for_quiet_hours_that_began_after_the_hold() -> None:
    at_night = datetime(2025, 6, 11, 0, 0, tzinfo=UTC)
    alerts = [held("c", at_night, HoldReason.DAILY_CAP)]
    plan = plan_release(alerts, quiet_hours=NIGHT, daily_cap=5, sent_today=0, now_utc=at_night)
    assert plan.digest == ()
    [(_, decision)] = plan.rehold
    assert decision == DeliveryDecision.hold(
        datetime(2025, 6, 11, 7, 0, tzinfo=UTC), HoldReason.DAILY_CAP
    )


def test_lifted_quiet_hours_release_alerts_before_their_time() -> None:
    alerts = [held("q", NOW + timedelta(hours=6))]
    plan = plan_release(alerts, quiet_hours=None, daily_cap=None, sent_today=0, now_utc=NOW)
    assert [h.hold_id for h in plan.deliver] == ["q"]


def test_unchanged_holds_are_left_alone() -> None:
    at_night = datetime(2025, 6, 10, 23, 0, tzinfo=UTC)
    morning = datetime(2025, 6, 11, 7, 0, tzinfo=UTC)
    plan = plan_release(
        [held("q", morning)], quiet_hours=NIGHT, daily_cap=None, sent_today=0, now_utc=at_night
    )
    assert plan.empty


def test_plan_release_refuses_a_naive_clock() -> None:
    with pytest.raises(ValueError):
        plan_release(
            [], quiet_hours=None, daily_cap=None, sent_today=0, now_utc=datetime(2025, 1, 1)
        )


def test_parse_quiet_hours() -> None:
    qh = parse_quiet_hours("22:30", "06:15", "America/New_York")
    assert (qh.start, qh.end, qh.tz) == (time(22, 30), time(6, 15), "America/New_York")
    for start, end, tz in [
        ("24:00", "06:00", "UTC"),
        ("7:00", "08:00", "UTC"),
        ("07:00", "08:00", "Mars/Base"),
    ]:
        with pytest.raises(ValueError):
            parse_quiet_hours(start, end, tz)


def test_notification_ids_sort_by_time_and_validate() -> None:
    early = new_notification_id(1_700_000_000_000)
    late = new_notification_id(1_700_000_000_001)
    assert early < late
    assert is_notification_id(early) and is_notification_id(late)
    assert not is_notification_id("n123") and not is_notification_id("x" * 25)
    assert notification_id_floor(1_700_000_000_001) <= late
    assert notification_id_floor(1_700_000_000_001) > early


def test_an_item_is_about_its_question_and_answer_unless_it_is_a_moderation_notice() -> None:
    nid = new_notification_id(0, "0" * 12)
    answer = new_item(nid, "new-answer", NOW, question_id="q1", answer_id="a1")
    assert moderated_subjects(answer) == [("q", "q1"), ("a", "a1")]
    assert moderated_subjects(new_item(nid, "question-match", NOW, question_id="q1")) == [
        ("q", "q1")
    ]
    assert moderated_subjects(new_item(nid, "channel-off", NOW)) == []
    for kind in ("item-hidden", "item-restored"):  # the author keeps these
        assert moderated_subjects(new_item(nid, kind, NOW, question_id="q1", answer_id="a1")) == []
    # A stored item a moderator hid is not shown, wherever it is read from.
    stored = {"item": json.dumps(answer), "recipient": "u1", "read": "0"}
    assert item_view(stored) is not None
    assert item_view({**stored, "hidden": "1"}) is None


def test_jitter_stays_within_half_to_full_delay() -> None:
    assert jittered(4.0, 0.0) == 2.0
    assert jittered(4.0, 1.0) == 4.0
    assert 2.0 <= jittered(4.0, 0.37) <= 4.0


def test_without_location_the_best_rated_of_the_specialty_win() -> None:
    candidates = [
        Candidate("low", ("dermatology",), 0.0, 0.0, 3.0, 500),
        Candidate("top", ("dermatology",), 0.0, 0.0, 5.0, 10),
        Candidate("top-more-reviews", ("dermatology",), 0.0, 0.0, 5.0, 90),
        Candidate("other", ("neurology",), 0.0, 0.0, 5.0, 999),
    ]
    matches = match_by_rating(["dermatology"], candidates, MatchPolicy(cap=2))
    assert [m.doctor_id for m in matches] == ["top-more-reviews", "top"]
    assert [m.rank for m in matches] == [1, 2]
    reason = matches[0].reason()
    assert reason["distance_km"] is None and reason["basis"] == "specialty_and_rating"
    assert matches[0].reason_text() == "dermatology · rank 1 · asker gave no location"


@pytest.mark.parametrize(
    "url",
    ["ftp://x.example/h", "https://user:pw@x.example/h", "https:///nohost", "http://x.example/a b"],
)
def test_webhook_url_problem_catches_bad_urls_before_dns(url: str) -> None:
    assert webhook_url_problem(url)


def test_webhook_url_problem_accepts_a_plain_https_url() -> None:
    assert webhook_url_problem("https://hooks.example.com/askdoc?x=1") is None
