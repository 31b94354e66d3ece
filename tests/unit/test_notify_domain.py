"""Unit tests for the notifier's pure rules (no Redis, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notify.alerts.domain import (
    VOTE_MILESTONES,
    DeliveryDecision,
    HoldReason,
    QuietHours,
    day_key,
    goes_out_now,
    in_quiet_hours,
    next_local_midnight,
    parse_quiet_hours,
    plan_delivery,
    quiet_hours_end,
    vote_milestone_crossed,
    zone_clock,
)
from services.notify.delivery.domain import (
    by_family,
    check_webhook_url,
    is_public_address,
    new_webhook_secret,
    retry_after_s,
    retry_delays,
    sign_webhook,
    unsubscribe_token,
    unsubscribe_token_valid,
    verify_webhook,
    webhook_payload,
    webhook_secret_key,
    webhook_signature,
)
from services.notify.matching.domain import (
    Candidate,
    Match,
    MatchPolicy,
    match_doctors,
)

LA = ZoneInfo("America/Los_Angeles")
PLASTIC = "plastic-surgery"
DERM = "dermatology"


def doc(
    doctor_id: str,
    distance_km: float,
    *,
    specialties: tuple[str, ...] = (PLASTIC,),
    radius_km: float = 50.0,
    rating: float = 4.5,
    review_count: int = 10,
) -> Candidate:
    return Candidate(doctor_id, specialties, distance_km, radius_km, rating, review_count)


def ids(matches: list[Match]) -> list[str]:
    return [m.doctor_id for m in matches]


def la(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A Los Angeles wall-clock time as a UTC instant."""
    return datetime(year, month, day, hour, minute, tzinfo=LA).astimezone(UTC)


# --- matching -------------------------------------------------------------------------


def test_wrong_specialty_is_never_matched_even_when_nearest() -> None:
    candidates = [doc("ortho", 0.5, specialties=("orthopedics",)), doc("a", 20), doc("b", 30)]
    policy = MatchPolicy(min_matches=5)
    assert ids(match_doctors([PLASTIC], candidates, policy)) == ["a", "b"]


def test_match_requires_no_candidates_and_no_specialties_gracefully() -> None:
    assert match_doctors([PLASTIC], [], MatchPolicy()) == []
    assert match_doctors([], [doc("a", 1)], MatchPolicy()) == []


def test_matched_specialty_is_the_first_question_specialty_the_doctor_has() -> None:
    candidates = [doc("a", 5, specialties=(DERM, PLASTIC))]
    [match] = match_doctors([PLASTIC, DERM], candidates, MatchPolicy())
    assert match.specialty == PLASTIC
    [match] = match_doctors([DERM, PLASTIC], candidates, MatchPolicy())
    assert match.specialty == DERM


def test_doctors_within_their_own_radius_match_without_widening() -> None:
    candidates = [doc("a", 5, radius_km=10), doc("b", 40, radius_km=50), doc("c", 9, radius_km=10)]
    matches = match_doctors([PLASTIC], candidates, MatchPolicy())
    assert sorted(ids(matches)) == ["a", "b", "c"]
    assert not any(m.widened for m in matches)
    assert {m.doctor_id: m.radius_used_km for m in matches} == {"a": 10, "b": 50, "c": 10}


def test_out_of_radius_is_excluded_when_enough_are_near() -> None:
    candidates = [doc("a", 1), doc("b", 2), doc("c", 3), doc("far", 60, radius_km=50)]
    assert "far" not in ids(match_doctors([PLASTIC], candidates, MatchPolicy(min_matches=3)))


def test_search_widens_when_too_few_and_marks_the_radius_used() -> None:
    candidates = [
        doc("near", 10, radius_km=50),
        doc("x1_5", 70, radius_km=50),  # within 75 km (x1.5)
        doc("x2", 90, radius_km=50),  # within 100 km (x2), not needed
    ]
    matches = match_doctors([PLASTIC], candidates, MatchPolicy(min_matches=2))
    by_id = {m.doctor_id: m for m in matches}
    assert set(by_id) == {"near", "x1_5"}  # stops at the first step reaching min_matches
    assert by_id["near"].widened is False
    widened = by_id["x1_5"]
    assert widened.widened is True
    assert widened.radius_used_km == 75.0
    assert widened.reason()["radius_km"] == 75.0
    assert widened.reason()["widened"] is True
    assert widened.reason_text().endswith(" · search widened to 75 km")


def test_widening_goes_step_by_step_until_the_last_factor() -> None:
    candidates = [doc("x2", 90, radius_km=50), doc("x4", 190, radius_km=50), doc("x5", 260)]
    matches = match_doctors([PLASTIC], candidates, MatchPolicy(min_matches=3))
    assert {m.doctor_id: m.radius_used_km for m in matches} == {"x2": 100.0, "x4": 200.0}
    assert all(m.widened for m in matches)


def test_widening_never_admits_another_specialty() -> None:
    candidates = [doc("derm", 1, specialties=(DERM,), radius_km=0.5)]
    assert match_doctors([PLASTIC], candidates, MatchPolicy()) == []


def test_each_doctor_is_matched_at_most_once() -> None:
    candidates = [
        doc("a", 12, specialties=(DERM,)),
        doc("a", 12, specialties=(PLASTIC,)),  # found again under another specialty
        doc("b", 20),
        doc("b", 20),
    ]
    matches = match_doctors([PLASTIC, DERM], candidates, MatchPolicy())
    assert sorted(ids(matches)) == ["a", "b"]
    assert {m.doctor_id: m.specialty for m in matches}["a"] == PLASTIC


def test_ranking_is_distance_band_then_rating_then_reviews() -> None:
    candidates = [
        doc("band0_low", 9.0, rating=4.0),
        doc("band0_high", 9.5, rating=5.0),
        doc("band1_best", 10.5, rating=5.0, review_count=999),
        doc("band0_high_more_reviews", 8.0, rating=5.0, review_count=50),
    ]
    matches = match_doctors([PLASTIC], candidates, MatchPolicy())
    assert ids(matches) == ["band0_high_more_reviews", "band0_high", "band0_low", "band1_best"]
    assert [m.rank for m in matches] == [1, 2, 3, 4]


def test_ranking_ties_break_on_distance_then_doctor_id() -> None:
    candidates = [doc("b", 3.0), doc("a", 3.0), doc("c", 2.0)]
    assert ids(match_doctors([PLASTIC], candidates, MatchPolicy())) == ["c", "a", "b"]
    assert ids(match_doctors([PLASTIC], reversed(candidates), MatchPolicy())) == ["c", "a", "b"]


def test_matches_are_capped_after_ranking() -> None:
    candidates = [doc(f"d{i:02d}", float(i)) for i in range(30, 0, -1)]
    matches = match_doctors([PLASTIC], candidates, MatchPolicy(cap=10))
    assert len(matches) == 10
    assert ids(matches) == [f"d{i:02d}" for i in range(1, 11)]
    assert match_doctors([PLASTIC], candidates, MatchPolicy(cap=0)) == []


def test_match_explains_itself() -> None:
    [match] = match_doctors([PLASTIC], [doc("a", 12.345)], MatchPolicy())
    assert match.distance_km == 12.3
    assert match.reason() == {
        "specialty": PLASTIC,
        "distance_km": 12.3,
        "rank": 1,
        "widened": False,
        "radius_km": 50.0,
    }
    assert match.reason_text() == "plastic-surgery · 12.3 km · rank 1"


def test_match_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        MatchPolicy(distance_band_km=0)
    with pytest.raises(ValueError):
        MatchPolicy(widen_factors=(2.0, 1.5))
    with pytest.raises(ValueError):
        MatchPolicy(cap=-1)


# --- quiet hours and caps -------------------------------------------------------------

NIGHT = QuietHours(time(22, 0), time(7, 0), "America/Los_Angeles")


def test_quiet_hours_cross_midnight() -> None:
    assert in_quiet_hours(NIGHT, la(2024, 6, 1, 22, 0))
    assert in_quiet_hours(NIGHT, la(2024, 6, 1, 23, 59))
    assert in_quiet_hours(NIGHT, la(2024, 6, 2, 0, 30))
    assert in_quiet_hours(NIGHT, la(2024, 6, 2, 6, 59))
    assert not in_quiet_hours(NIGHT, la(2024, 6, 2, 7, 0))
    assert not in_quiet_hours(NIGHT, la(2024, 6, 2, 21, 59))


def test_quiet_hours_within_one_day() -> None:
    lunch = QuietHours(time(12, 0), time(13, 0), "UTC")
    assert in_quiet_hours(lunch, datetime(2024, 6, 1, 12, 30, tzinfo=UTC))
    assert not in_quiet_hours(lunch, datetime(2024, 6, 1, 13, 0, tzinfo=UTC))
    empty = QuietHours(time(9, 0), time(9, 0), "UTC")
    assert not in_quiet_hours(empty, datetime(2024, 6, 1, 9, 0, tzinfo=UTC))


def test_quiet_hours_end_in_the_evening_is_next_morning() -> None:
    assert quiet_hours_end(NIGHT, la(2024, 6, 1, 23, 0)) == la(2024, 6, 2, 7, 0)
    assert quiet_hours_end(NIGHT, la(2024, 6, 2, 3, 0)) == la(2024, 6, 2, 7, 0)
    assert la(2024, 6, 2, 7, 0) == datetime(2024, 6, 2, 14, 0, tzinfo=UTC)  # PDT, UTC-7


def test_quiet_hours_end_across_spring_forward() -> None:
    # 2024-03-10 02:00 PST -> 03:00 PDT: the night is an hour shorter in UTC.
    now = datetime(2024, 3, 10, 7, 0, tzinfo=UTC)  # 23:00 PST on March 9
    assert in_quiet_hours(NIGHT, now)
    assert quiet_hours_end(NIGHT, now) == datetime(2024, 3, 10, 14, 0, tzinfo=UTC)  # 07:00 PDT


def test_quiet_hours_end_across_fall_back() -> None:
    now = datetime(2024, 11, 3, 6, 0, tzinfo=UTC)  # 23:00 PDT on November 2
    assert quiet_hours_end(NIGHT, now) == datetime(2024, 11, 3, 15, 0, tzinfo=UTC)  # 07:00 PST


def test_quiet_hours_end_on_a_repeated_hour_is_not_in_the_past() -> None:
    short = QuietHours(time(22, 0), time(1, 30), "America/Los_Angeles")
    # 01:10 PST on 2024-11-03, the second pass through 01:xx: quiet until 01:30 PST.
    now = datetime(2024, 11, 3, 9, 10, tzinfo=UTC)
    assert in_quiet_hours(short, now)
    assert quiet_hours_end(short, now) == datetime(2024, 11, 3, 9, 30, tzinfo=UTC)


def test_quiet_hours_end_when_not_quiet_is_now() -> None:
    now = la(2024, 6, 1, 12, 0)
    assert quiet_hours_end(NIGHT, now) == now


def test_quiet_hours_reject_unknown_zone_and_naive_time() -> None:
    with pytest.raises(ValueError):
        QuietHours(time(22, 0), time(7, 0), "Mars/Olympus_Mons")
    with pytest.raises(ValueError):
        in_quiet_hours(NIGHT, datetime(2024, 6, 1, 12, 0))


def test_day_key_is_the_doctors_local_date() -> None:
    now = datetime(2024, 1, 1, 5, 0, tzinfo=UTC)
    assert day_key("America/Los_Angeles", now) == "2023-12-31"
    assert day_key(None, now) == "2024-01-01"
    assert day_key("Asia/Tokyo", datetime(2023, 12, 31, 16, 0, tzinfo=UTC)) == "2024-01-01"


def test_next_local_midnight_on_a_dst_day() -> None:
    # March 10 2024 is 23 hours long in Los Angeles.
    assert next_local_midnight("America/Los_Angeles", la(2024, 3, 10, 12, 0)) == datetime(
        2024, 3, 11, 7, 0, tzinfo=UTC
    )
    assert next_local_midnight(None, datetime(2024, 3, 10, 23, 59, tzinfo=UTC)) == datetime(
        2024, 3, 11, tzinfo=UTC
    )


def test_delivery_goes_out_now_by_default() -> None:
    decision = plan_delivery(
        urgent=False, quiet_hours=NIGHT, daily_cap=5, sent_today=4, now_utc=la(2024, 6, 1, 12, 0)
    )
    assert decision == DeliveryDecision.now()
    assert decision.deliver_now and decision.hold_until is None and not decision.digest


def test_delivery_in_quiet_hours_is_held_until_they_end() -> None:
    decision = plan_delivery(
        urgent=False, quiet_hours=NIGHT, daily_cap=None, sent_today=0, now_utc=la(2024, 6, 1, 23)
    )
    assert decision == DeliveryDecision.hold(la(2024, 6, 2, 7, 0), HoldReason.QUIET_HOURS)
    assert not decision.digest


def test_over_daily_cap_is_held_to_next_local_midnight_for_the_digest() -> None:
    decision = plan_delivery(
        urgent=False,
        quiet_hours=None,
        daily_cap=3,
        sent_today=3,
        now_utc=datetime(2024, 6, 1, 15, 0, tzinfo=UTC),
    )
    assert decision.reason is HoldReason.DAILY_CAP
    assert decision.hold_until == datetime(2024, 6, 2, tzinfo=UTC)
    assert decision.digest and not decision.deliver_now


def test_daily_cap_is_checked_before_quiet_hours_and_digest_waits_for_morning() -> None:
    afternoon = plan_delivery(
        urgent=False, quiet_hours=NIGHT, daily_cap=3, sent_today=7, now_utc=la(2024, 6, 1, 15)
    )
    # The doctor's midnight falls inside 22:00-07:00, so the digest goes at 07:00.
    assert afternoon == DeliveryDecision.hold(la(2024, 6, 2, 7, 0), HoldReason.DAILY_CAP)
    night = plan_delivery(
        urgent=False, quiet_hours=NIGHT, daily_cap=3, sent_today=3, now_utc=la(2024, 6, 1, 23)
    )
    assert night.reason is HoldReason.DAILY_CAP


def test_daily_cap_midnight_uses_the_quiet_hours_zone() -> None:
    evening = QuietHours(time(20, 0), time(21, 0), "America/Los_Angeles")
    decision = plan_delivery(
        urgent=False, quiet_hours=evening, daily_cap=1, sent_today=1, now_utc=la(2024, 6, 1, 15)
    )
    assert decision.hold_until == la(2024, 6, 2, 0, 0)


def test_urgent_bypasses_quiet_hours_and_daily_cap() -> None:
    decision = plan_delivery(
        urgent=True, quiet_hours=NIGHT, daily_cap=1, sent_today=99, now_utc=la(2024, 6, 2, 3, 0)
    )
    assert decision == DeliveryDecision.now()


def test_delivery_decision_is_consistent() -> None:
    with pytest.raises(ValueError):
        DeliveryDecision(deliver_now=True, hold_until=datetime(2024, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError):
        DeliveryDecision(deliver_now=False)


# --- vote milestones ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (0, 1, 1),
        (1, 2, None),
        (4, 6, 5),
        (3, 30, 25),
        (5, 5, None),
        (10, 9, None),
        (999, 5000, 1000),
        (1000, 1001, None),
    ],
)
def test_vote_milestone_crossed(previous: int, current: int, expected: int | None) -> None:
    assert vote_milestone_crossed(previous, current) == expected


def test_vote_alerts_are_batched_not_one_per_vote() -> None:
    alerts = [m for n in range(100) if (m := vote_milestone_crossed(n, n + 1)) is not None]
    assert alerts == [m for m in VOTE_MILESTONES if m <= 100]


# --- webhook signing (Standard Webhooks v1) ---------------------------------------------

# The specification's own test vector (standard-webhooks/spec, also in TOOLS.md).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = new_webhook_secret()
OTHER = new_webhook_secret()
BODY = b'{"notification_id":"n1"}'


def test_the_specs_test_vector_signs_as_published() -> None:
    assert webhook_signature(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE
    assert sign_webhook([SPEC_SECRET], SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_the_specs_test_vector_verifies_with_the_standardwebhooks_package() -> None:
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TS),
        "webhook-signature": SPEC_SIGNATURE,
    }
    # The vector is from 2021: the package's 5-minute window refuses it as too old,
    # so a fresh timestamp signed by our code is what it must accept.
    with pytest.raises(WebhookVerificationError):
        Webhook(SPEC_SECRET).verify(SPEC_BODY, headers)
    now = int(datetime.now(UTC).timestamp())
    fresh = {**headers, "webhook-timestamp": str(now)}
    fresh["webhook-signature"] = sign_webhook([SPEC_SECRET], SPEC_ID, now, SPEC_BODY)
    assert Webhook(SPEC_SECRET).verify(SPEC_BODY, fresh) == {"test": 2432232314}


def test_new_secrets_have_the_standard_form() -> None:
    assert SECRET.startswith("whsec_") and SECRET != OTHER
    assert len(webhook_secret_key(SECRET)) == 32


@pytest.mark.parametrize(
    "bad", ["s" * 24, "whsec_", "whsec_not base64!", "whsec_" + "QUJD", "whsec-" + "A" * 43]
)
def test_secrets_not_in_the_standard_form_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        webhook_secret_key(bad)


def test_unpadded_secrets_are_accepted_as_receivers_accept_them() -> None:
    assert webhook_secret_key(SECRET.rstrip("=")) == webhook_secret_key(SECRET)


def test_webhook_signature_verifies() -> None:
    header = sign_webhook([SECRET], "n1", 1700000000, BODY)
    assert header.startswith("v1,") and " " not in header
    assert verify_webhook(SECRET, "n1", "1700000000", header, BODY, now=1700000100)


def test_webhook_signature_rejects_tampering() -> None:
    header = sign_webhook([SECRET], "n1", 1700000000, BODY)
    assert not verify_webhook(SECRET, "n1", "1700000000", header, BODY + b" ", now=1700000000)
    assert not verify_webhook(OTHER, "n1", "1700000000", header, BODY, now=1700000000)
    assert not verify_webhook(SECRET, "n2", "1700000000", header, BODY, now=1700000000)
    assert not verify_webhook(SECRET, "n1", "1700000001", header, BODY, now=1700000000)


def test_webhook_signature_expires() -> None:
    header = sign_webhook([SECRET], "n1", 1700000000, BODY)
    assert verify_webhook(SECRET, "n1", "1700000000", header, BODY, now=1700000300)
    assert not verify_webhook(SECRET, "n1", "1700000000", header, BODY, now=1700000301)
    assert not verify_webhook(SECRET, "n1", "1700000000", header, BODY, now=1699999000)
    assert verify_webhook(SECRET, "n1", "1700000000", header, BODY, 1700000500, tolerance_s=600)


@pytest.mark.parametrize("header", ["", "garbage", "v1,", "v2,abc", "v1,AAAA"])
def test_webhook_signature_rejects_malformed_headers(header: str) -> None:
    assert not verify_webhook(SECRET, "n1", "1700000000", header, BODY, now=1700000000)


def test_a_rotation_signs_with_both_secrets_and_either_verifies() -> None:
    header = sign_webhook([SECRET, OTHER], "n1", 1700000000, BODY)
    assert len(header.split(" ")) == 2
    assert verify_webhook(SECRET, "n1", "1700000000", header, BODY, now=1700000000)
    assert verify_webhook(OTHER, "n1", "1700000000", header, BODY, now=1700000000)


def test_the_payload_is_type_timestamp_data() -> None:
    body = webhook_payload("question-match", "2026-01-01T00:00:00+00:00", {"a": 1})
    assert body == (
        b'{"data":{"a":1},"timestamp":"2026-01-01T00:00:00+00:00",'
        b'"type":"notification.question-match"}'
    )


def test_retries_follow_the_standard_schedule_scaled_and_capped() -> None:
    assert retry_delays(0) == []
    assert retry_delays(7) == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert retry_delays(9)[-2:] == [36000, 36000]
    assert retry_delays(3, base_s=0.5) == [0.5, 30.0, 180.0]
    assert retry_delays(7, max_s=600)[-1] == 600
    with pytest.raises(ValueError):
        retry_delays(-1)


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    assert retry_after_s("120", now=0) == 120
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470) == 10
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490) == 0
    for bad in (None, "", "soon", "-5", "1.5"):
        assert retry_after_s(bad, now=0) is None


def test_addresses_are_tried_ipv4_first_each_once() -> None:
    ips = ["2001:db8::1", "93.184.216.34", "2001:db8::2", "93.184.216.35", "93.184.216.34"]
    assert by_family(ips) == ["93.184.216.34", "93.184.216.35", "2001:db8::1", "2001:db8::2"]


def test_unsubscribe_tokens_are_bound_to_their_recipient_and_key() -> None:
    token = unsubscribe_token(b"k" * 32, "dr-1")
    assert unsubscribe_token_valid(b"k" * 32, "dr-1", token)
    assert not unsubscribe_token_valid(b"k" * 32, "dr-2", token)
    assert not unsubscribe_token_valid(b"j" * 32, "dr-1", token)
    assert not unsubscribe_token_valid(b"k" * 32, "dr-1", token[:-1])


def test_plain_http_webhooks_only_with_private_targets_allowed() -> None:
    assert check_webhook_url("http://93.184.216.34/hook", ["93.184.216.34"], False) is not None
    assert check_webhook_url("https://93.184.216.34/hook", ["93.184.216.34"], False) is None
    assert check_webhook_url("http://127.0.0.1:9000/hook", ["127.0.0.1"], True) is None


# --- SSRF guard -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip",
    [
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "::1",
        "169.254.169.254",
        "169.254.1.1",
        "100.64.0.1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "233.1.1.1",
        "240.0.0.1",
        "255.255.255.255",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "2002:a00:1::1",  # 6to4 wrapping 10.0.0.1
        "not-an-ip",
        "",
    ],
)
def test_non_public_addresses_are_refused(ip: str) -> None:
    assert is_public_address(ip) is False


@pytest.mark.parametrize(
    "ip", ["93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_allowed(ip: str) -> None:
    assert is_public_address(ip) is True


def test_webhook_url_to_a_public_host_is_allowed() -> None:
    assert check_webhook_url("https://hooks.example.com/askdoc", ["93.184.216.34"], False) is None


@pytest.mark.parametrize(
    ("url", "ips"),
    [
        ("https://internal.example.com/hook", ["10.0.0.1"]),
        ("https://mixed.example.com/hook", ["93.184.216.34", "127.0.0.1"]),
        ("http://169.254.169.254/latest/meta-data/", []),
        ("http://[::1]:8080/hook", []),
        ("ftp://hooks.example.com/hook", ["93.184.216.34"]),
        ("file:///etc/passwd", []),
        ("https:///nohost", ["93.184.216.34"]),
        ("https://user:pass@hooks.example.com/hook", ["93.184.216.34"]),
        ("https://hooks.example.com/hook", []),
        ("https://hooks.example.com:99999/hook", ["93.184.216.34"]),
        ("https://hooks.example.com/a b", ["93.184.216.34"]),
    ],
)
def test_webhook_url_is_refused(url: str, ips: list[str]) -> None:
    error = check_webhook_url(url, ips, allow_private=False)
    assert isinstance(error, str) and error


def test_allow_private_lets_a_local_receiver_through() -> None:
    assert check_webhook_url("http://127.0.0.1:9000/hook", ["127.0.0.1"], True) is None
    assert check_webhook_url("http://127.0.0.1:9000/hook", ["127.0.0.1"], False) is not None
    assert check_webhook_url("ftp://127.0.0.1/hook", ["127.0.0.1"], True) is not None


def test_hold_reason_values_are_wire_strings() -> None:
    assert HoldReason.QUIET_HOURS.value == "quiet_hours"
    assert HoldReason.DAILY_CAP.value == "daily_cap"


# --- the batch script's rule: goes_out_now is plan_delivery(urgent=False).deliver_now ---


@given(
    start=st.integers(0, 1439),
    end=st.integers(0, 1439),
    tz=st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]),
    quiet=st.booleans(),
    cap=st.none() | st.integers(0, 3),
    sent=st.integers(0, 4),
    now=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
)
def test_goes_out_now_is_the_routine_plan(
    start: int, end: int, tz: str, quiet: bool, cap: int | None, sent: int, now: datetime
) -> None:
    qh = (
        parse_quiet_hours(
            f"{start // 60:02d}:{start % 60:02d}", f"{end // 60:02d}:{end % 60:02d}", tz
        )
        if quiet
        else None
    )
    plan = plan_delivery(urgent=False, quiet_hours=qh, daily_cap=cap, sent_today=sent, now_utc=now)
    assert goes_out_now(quiet_hours=qh, daily_cap=cap, sent_today=sent, now_utc=now) is (
        plan.deliver_now
    )
    # The script decides from the zone's whole minute: the same answer.
    if qh is not None:
        clock = zone_clock(tz, now)
        s, e = start, end
        inside = (s <= clock.minute < e) if s <= e else (clock.minute >= s or clock.minute < e)
        assert inside is not goes_out_now(quiet_hours=qh, daily_cap=None, sent_today=0, now_utc=now)
