"""When alerts go out: quiet hours, daily caps, held alerts and digests, vote milestones.

Standard library only: every function takes plain values and returns a decision, so
the rules are unit-tested without Redis, HTTP or a clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def _zone(tz: str | None) -> ZoneInfo:
    """The IANA time zone named `tz` (UTC when None); ValueError when unknown."""
    try:
        return ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone: {tz!r}") from exc


def _require_aware(now_utc: datetime) -> None:
    """Refuse a naive datetime: local-time rules need a real instant."""
    if now_utc.tzinfo is None or now_utc.utcoffset() is None:
        raise ValueError("now_utc must be timezone-aware")


def _local_instant(day: date, at: time, zone: ZoneInfo, after: datetime) -> datetime:
    """The UTC instant of wall-clock `at` on `day` in `zone`, the earliest one after `after`.

    A wall time repeated when clocks fall back is taken at its first occurrence unless
    that one has already passed; a wall time skipped when clocks spring forward is read
    with the pre-transition offset (zoneinfo's fold=0), i.e. up to an hour late, which
    errs towards keeping quiet.
    """
    first = datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
    if first > after:
        return first
    second = datetime.combine(day, at, tzinfo=zone).replace(fold=1).astimezone(UTC)
    return max(first, second)


@dataclass(frozen=True)
class QuietHours:
    """A doctor's daily do-not-disturb window in local time; it may cross midnight."""

    start: time
    end: time
    tz: str

    def __post_init__(self) -> None:
        _zone(self.tz)

    @property
    def zone(self) -> ZoneInfo:
        """The window's time zone."""
        return _zone(self.tz)

    def contains(self, local: time) -> bool:
        """Whether a local wall-clock time falls inside the window (start == end: never)."""
        local = local.replace(tzinfo=None)
        start, end = self.start.replace(tzinfo=None), self.end.replace(tzinfo=None)
        if start <= end:
            return start <= local < end
        return local >= start or local < end


def in_quiet_hours(qh: QuietHours, now_utc: datetime) -> bool:
    """Whether `now_utc` falls inside the doctor's quiet hours."""
    _require_aware(now_utc)
    return qh.contains(now_utc.astimezone(qh.zone).time())


def quiet_hours_end(qh: QuietHours, now_utc: datetime) -> datetime:
    """The UTC instant the current quiet window ends (`now_utc` itself when not quiet)."""
    _require_aware(now_utc)
    if not in_quiet_hours(qh, now_utc):
        return now_utc.astimezone(UTC)
    local = now_utc.astimezone(qh.zone)
    end_day = local.date()
    start, end = qh.start.replace(tzinfo=None), qh.end.replace(tzinfo=None)
    if start > end and local.time() >= start:
        end_day += timedelta(days=1)  # in the evening part of a window crossing midnight
    return _local_instant(end_day, end, qh.zone, now_utc)


def next_local_midnight(tz: str | None, now_utc: datetime) -> datetime:
    """The UTC instant of the next local midnight in `tz` (UTC when None)."""
    _require_aware(now_utc)
    zone = _zone(tz)
    tomorrow = now_utc.astimezone(zone).date() + timedelta(days=1)
    return _local_instant(tomorrow, time(0, 0), zone, now_utc)


def hour_key(now_utc: datetime) -> str:
    """The UTC hour 'YYYY-MM-DDTHH', the key of the per-hour urgent alert count."""
    _require_aware(now_utc)
    return now_utc.astimezone(UTC).strftime("%Y-%m-%dT%H")


def day_key(tz: str | None, now_utc: datetime) -> str:
    """The doctor's local date 'YYYY-MM-DD', the key of the per-day alert counter."""
    _require_aware(now_utc)
    return now_utc.astimezone(_zone(tz)).date().isoformat()


class HoldReason(StrEnum):
    """Why an alert waits instead of going out now."""

    QUIET_HOURS = "quiet_hours"
    DAILY_CAP = "daily_cap"


@dataclass(frozen=True)
class DeliveryDecision:
    """Deliver an alert now, or hold it until an instant; alerts are never dropped."""

    deliver_now: bool
    hold_until: datetime | None = None
    reason: HoldReason | None = None

    def __post_init__(self) -> None:
        if self.deliver_now != (self.hold_until is None) or (self.hold_until is None) != (
            self.reason is None
        ):
            raise ValueError("deliver now, or hold with both an instant and a reason")

    @classmethod
    def now(cls) -> DeliveryDecision:
        """Deliver immediately."""
        return cls(deliver_now=True)

    @classmethod
    def hold(cls, until: datetime, reason: HoldReason) -> DeliveryDecision:
        """Hold until `until` (UTC) for `reason`."""
        return cls(deliver_now=False, hold_until=until, reason=reason)

    @property
    def digest(self) -> bool:
        """Whether the held alert goes out in the doctor's digest rather than on its own."""
        return self.reason is HoldReason.DAILY_CAP


def plan_delivery(
    *,
    urgent: bool,
    quiet_hours: QuietHours | None,
    daily_cap: int | None,
    sent_today: int,
    now_utc: datetime,
    urgent_this_hour: int = 0,
    urgent_hourly_cap: int | None = None,
) -> DeliveryDecision:
    """When an alert goes out: now, after quiet hours, or in the next day's digest."""
    _require_aware(now_utc)
    if (
        urgent
        and urgent_hourly_cap is not None
        and urgent_this_hour >= urgent_hourly_cap
        and quiet_hours is not None
        and in_quiet_hours(quiet_hours, now_utc)
    ):
        # A flood of "emergencies" must not page a doctor all night: past a few an hour,
        # the rest wait for the window's end and go out collapsed into one digest.
        return DeliveryDecision.hold(quiet_hours_end(quiet_hours, now_utc), HoldReason.DAILY_CAP)
    if urgent:
        # Urgent alerts (red-flag triage) bypass both the daily cap and quiet hours: they
        # are rare, their value is lost if held until morning or a digest, and a doctor's
        # cap exists to limit routine noise, not emergencies. The caller still counts a
        # delivered urgent alert in sent_today, so the cap bounds the day's total.
        return DeliveryDecision.now()
    if daily_cap is not None and sent_today >= daily_cap:
        # Over the cap nothing is dropped: the alert waits for the doctor's next local
        # midnight (when the counter resets) and goes out in a digest; if that midnight
        # is inside quiet hours, the digest waits for the window to end as well.
        tz = quiet_hours.tz if quiet_hours is not None else None
        release = next_local_midnight(tz, now_utc)
        if quiet_hours is not None and in_quiet_hours(quiet_hours, release):
            release = quiet_hours_end(quiet_hours, release)
        return DeliveryDecision.hold(release, HoldReason.DAILY_CAP)
    if quiet_hours is not None and in_quiet_hours(quiet_hours, now_utc):
        return DeliveryDecision.hold(quiet_hours_end(quiet_hours, now_utc), HoldReason.QUIET_HOURS)
    return DeliveryDecision.now()


def goes_out_now(
    *, quiet_hours: QuietHours | None, daily_cap: int | None, sent_today: int, now_utc: datetime
) -> bool:
    """Whether a routine (not urgent) alert goes out at once rather than being held.

    The rule `alert_batch.lua` applies inside Redis to a whole batch of questions; it is
    `plan_delivery(urgent=False, ...).deliver_now`, and a property test holds the three
    to the same answers. What it holds goes through `plan_delivery` for the when and why.
    """
    _require_aware(now_utc)
    if daily_cap is not None and sent_today >= daily_cap:
        return False
    return quiet_hours is None or not in_quiet_hours(quiet_hours, now_utc)


@dataclass(frozen=True)
class ZoneClock:
    """What a batch script needs of a time zone now: the local date and minute of the day."""

    day: str
    minute: int


def zone_clock(tz: str | None, now_utc: datetime) -> ZoneClock:
    """The local date (the day counters' key) and minute of the day in `tz` at `now_utc`.

    Quiet hours start and end on whole minutes, so the minute decides `contains` exactly.
    """
    _require_aware(now_utc)
    local = now_utc.astimezone(_zone(tz))
    return ZoneClock(local.date().isoformat(), local.hour * 60 + local.minute)


# Vote alerts, batched by milestone

VOTE_MILESTONES: tuple[int, ...] = (1, 5, 10, 25, 50, 100, 250, 500, 1000)


def vote_milestone_crossed(previous_helpful: int, current_helpful: int) -> int | None:
    """The highest milestone m with previous < m <= current, else None (no alert)."""
    crossed = [m for m in VOTE_MILESTONES if previous_helpful < m <= current_helpful]
    return crossed[-1] if crossed else None


# Held alerts: released after quiet hours, or together in a digest

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_quiet_hours(start: str, end: str, tz: str) -> QuietHours:
    """Quiet hours from 'HH:MM' strings and an IANA zone; ValueError when malformed."""
    times = []
    for label, text in (("start", start), ("end", end)):
        m = _HHMM.match(text.strip())
        if m is None:
            raise ValueError(f"quiet_hours.{label} must be HH:MM (24-hour), got {text!r}")
        times.append(time(int(m.group(1)), int(m.group(2))))
    return QuietHours(times[0], times[1], tz.strip())


@dataclass(frozen=True)
class HeldAlert:
    """A question alert waiting for a doctor's quiet hours to end or for the next digest."""

    hold_id: str
    release_at: datetime
    reason: HoldReason


@dataclass(frozen=True)
class ReleasePlan:
    """What to do now with a doctor's held alerts."""

    deliver: tuple[HeldAlert, ...] = ()
    digest: tuple[HeldAlert, ...] = ()
    rehold: tuple[tuple[HeldAlert, DeliveryDecision], ...] = ()

    @property
    def empty(self) -> bool:
        """Whether nothing changes."""
        return not (self.deliver or self.digest or self.rehold)


def plan_release(
    held: Iterable[HeldAlert],
    *,
    quiet_hours: QuietHours | None,
    daily_cap: int | None,
    sent_today: int,
    now_utc: datetime,
) -> ReleasePlan:
    """Release a doctor's held alerts: due cap-held ones as one digest, the rest re-planned.

    Alerts held over the daily cap go out together as one digest once their release time
    (the doctor's local midnight, or the end of quiet hours after it) has come; the digest
    counts as one alert of the new day. Every other held alert is planned again with
    `plan_delivery` against today's count, so alerts released when quiet hours end go
    out one by one only while the daily cap allows, and the rest wait for the digest.
    Re-planning also honours a profile change (quiet hours lifted, cap raised) at once.
    """
    _require_aware(now_utc)
    ordered = sorted(held, key=lambda h: (h.release_at, h.hold_id))
    due_digest = [
        h for h in ordered if h.reason is HoldReason.DAILY_CAP and h.release_at <= now_utc
    ]
    rehold: list[tuple[HeldAlert, DeliveryDecision]] = []
    digest: list[HeldAlert] = []
    sent = sent_today
    if due_digest:
        if quiet_hours is not None and in_quiet_hours(quiet_hours, now_utc):
            # Quiet hours changed since the hold: the digest waits for them to end.
            until = quiet_hours_end(quiet_hours, now_utc)
            rehold.extend(
                (h, DeliveryDecision.hold(until, HoldReason.DAILY_CAP)) for h in due_digest
            )
        else:
            digest = due_digest
            sent += 1
    deliver: list[HeldAlert] = []
    for h in ordered:
        if h in due_digest:
            continue
        decision = plan_delivery(
            urgent=False,
            quiet_hours=quiet_hours,
            daily_cap=daily_cap,
            sent_today=sent,
            now_utc=now_utc,
        )
        if decision.deliver_now:
            deliver.append(h)
            sent += 1
        elif decision.hold_until != h.release_at or decision.reason is not h.reason:
            rehold.append((h, decision))
    return ReleasePlan(tuple(deliver), tuple(digest), tuple(rehold))
