"""The notifier's pure rules: matching, delivery timing, triage, vote alerts, webhooks.

Standard library only: every function takes plain values and returns a decision, so
the rules are unit-tested without Redis, HTTP or a clock.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import math
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# ---------------------------------------------------------------------------
# 1. Matching doctors to a question
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A doctor from the directory, with the distance from the asker already computed."""

    doctor_id: str
    specialties: tuple[str, ...]
    distance_km: float
    radius_km: float
    rating: float = 0.0
    review_count: int = 0


@dataclass(frozen=True)
class MatchPolicy:
    """How many doctors a question alerts and how the search widens when too few are near."""

    cap: int = 10
    min_matches: int = 3
    widen_factors: tuple[float, ...] = (1.5, 2.0, 4.0)
    distance_band_km: float = 10.0

    def __post_init__(self) -> None:
        if self.cap < 0 or self.min_matches < 0:
            raise ValueError("cap and min_matches must be >= 0")
        if self.distance_band_km <= 0:
            raise ValueError("distance_band_km must be > 0")
        if any(f <= 1.0 for f in self.widen_factors) or list(self.widen_factors) != sorted(
            self.widen_factors
        ):
            raise ValueError("widen_factors must be ascending and each > 1")


@dataclass(frozen=True)
class Match:
    """A doctor chosen for a question, with what it takes to explain the alert."""

    doctor_id: str
    specialty: str
    distance_km: float
    rank: int
    widened: bool
    radius_used_km: float
    located: bool = True

    def reason(self) -> dict[str, Any]:
        """The inbox item's `reason`: matched specialty, distance, rank and search radius."""
        if not self.located:
            # The asker gave no location: matched on specialty alone, ranked by rating.
            return {
                "specialty": self.specialty,
                "distance_km": None,
                "rank": self.rank,
                "widened": False,
                "radius_km": None,
                "basis": "specialty_and_rating",
            }
        return {
            "specialty": self.specialty,
            "distance_km": self.distance_km,
            "rank": self.rank,
            "widened": self.widened,
            "radius_km": round(self.radius_used_km, 1),
        }

    def reason_text(self) -> str:
        """A one-line explanation, e.g. 'plastic-surgery · 12.3 km · rank 1'."""
        if not self.located:
            return f"{self.specialty} · rank {self.rank} · asker gave no location"
        text = f"{self.specialty} · {self.distance_km:g} km · rank {self.rank}"
        if self.widened:
            text += f" · search widened to {round(self.radius_used_km, 1):g} km"
        return text


def _first_shared(question_specialties: Sequence[str], doctor: Iterable[str]) -> str | None:
    """The first of the question's specialties that the doctor has, if any."""
    have = set(doctor)
    return next((s for s in question_specialties if s in have), None)


def _merge_duplicates(candidates: Iterable[Candidate]) -> list[Candidate]:
    """One candidate per doctor: specialties united, nearest distance and widest radius kept."""
    merged: dict[str, Candidate] = {}
    for c in candidates:
        seen = merged.get(c.doctor_id)
        if seen is None:
            merged[c.doctor_id] = c
            continue
        specialties = seen.specialties + tuple(
            s for s in c.specialties if s not in seen.specialties
        )
        merged[c.doctor_id] = Candidate(
            doctor_id=c.doctor_id,
            specialties=specialties,
            distance_km=min(seen.distance_km, c.distance_km),
            radius_km=max(seen.radius_km, c.radius_km),
            rating=max(seen.rating, c.rating),
            review_count=max(seen.review_count, c.review_count),
        )
    return list(merged.values())


def match_doctors(
    question_specialties: Sequence[str],
    candidates: Iterable[Candidate],
    policy: MatchPolicy,
) -> list[Match]:
    """The doctors to alert for a question, best first, widening the search if too few."""
    eligible: list[tuple[Candidate, str]] = []
    for c in _merge_duplicates(candidates):
        specialty = _first_shared(question_specialties, c.specialties)
        # A doctor of another specialty is never alerted, however near.
        if specialty is not None and math.isfinite(c.distance_km):
            eligible.append((c, specialty))

    chosen: dict[str, tuple[Candidate, str, bool, float]] = {}
    for c, specialty in eligible:
        if c.distance_km <= c.radius_km:
            chosen[c.doctor_id] = (c, specialty, False, c.radius_km)
    for factor in policy.widen_factors:
        if len(chosen) >= policy.min_matches:
            break
        for c, specialty in eligible:
            radius = c.radius_km * factor
            if c.doctor_id not in chosen and c.distance_km <= radius:
                chosen[c.doctor_id] = (c, specialty, True, radius)

    def rank_key(item: tuple[Candidate, str, bool, float]) -> tuple[int, float, int, float, str]:
        c = item[0]
        band = math.floor(c.distance_km / policy.distance_band_km)
        return (band, -c.rating, -c.review_count, c.distance_km, c.doctor_id)

    ranked = sorted(chosen.values(), key=rank_key)[: policy.cap]
    return [
        Match(
            doctor_id=c.doctor_id,
            specialty=specialty,
            distance_km=round(c.distance_km, 1),
            rank=rank,
            widened=widened,
            radius_used_km=radius,
        )
        for rank, (c, specialty, widened, radius) in enumerate(ranked, start=1)
    ]


def match_by_rating(
    question_specialties: Sequence[str],
    candidates: Iterable[Candidate],
    policy: MatchPolicy,
) -> list[Match]:
    """The doctors to alert for a question without a location: specialty only, best rated first.

    Distance and radius mean nothing without the asker's place, so every doctor of a
    matching specialty is eligible and the cap keeps the best rated (then most reviewed).
    """
    eligible: list[tuple[Candidate, str]] = []
    for c in _merge_duplicates(candidates):
        specialty = _first_shared(question_specialties, c.specialties)
        if specialty is not None:
            eligible.append((c, specialty))
    eligible.sort(key=lambda item: (-item[0].rating, -item[0].review_count, item[0].doctor_id))
    return [
        Match(
            doctor_id=c.doctor_id,
            specialty=specialty,
            distance_km=0.0,
            rank=rank,
            widened=False,
            radius_used_km=0.0,
            located=False,
        )
        for rank, (c, specialty) in enumerate(eligible[: policy.cap], start=1)
    ]


# ---------------------------------------------------------------------------
# 2. Quiet hours and daily caps
# ---------------------------------------------------------------------------


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
) -> DeliveryDecision:
    """When an alert goes out: now, after quiet hours, or in the next day's digest."""
    _require_aware(now_utc)
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


# ---------------------------------------------------------------------------
# 4. Vote alerts, batched by milestone
# ---------------------------------------------------------------------------

VOTE_MILESTONES: tuple[int, ...] = (1, 5, 10, 25, 50, 100, 250, 500, 1000)


def vote_milestone_crossed(previous_helpful: int, current_helpful: int) -> int | None:
    """The highest milestone m with previous < m <= current, else None (no alert)."""
    crossed = [m for m in VOTE_MILESTONES if previous_helpful < m <= current_helpful]
    return crossed[-1] if crossed else None


# ---------------------------------------------------------------------------
# 5. Webhook signing and retry delays
# ---------------------------------------------------------------------------


def _signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 over '<timestamp>.' + body."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_webhook(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value 't=<ts>,v1=<hex hmac-sha256 of "<ts>." + body>'."""
    return f"t={timestamp},v1={_signature(secret, timestamp, body)}"


def verify_webhook(secret: str, header: str, body: bytes, now: int, tolerance_s: int = 300) -> bool:
    """Whether a signature header is valid for `body` and no older (or newer) than tolerance."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                return False
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures or abs(now - timestamp) > tolerance_s:
        return False
    expected = _signature(secret, timestamp, body)
    # Several v1 values are allowed so that a secret can be rotated without downtime.
    return any(hmac.compare_digest(expected.encode(), s.encode()) for s in signatures)


def backoff_delays(
    attempts: int, base_s: float = 1.0, factor: float = 2.0, max_s: float = 60.0
) -> list[float]:
    """Exponential retry delays base, base*factor, ... capped at max_s (no jitter)."""
    if attempts < 0 or base_s < 0 or factor < 1 or max_s < 0:
        raise ValueError("attempts, base_s, max_s must be >= 0 and factor >= 1")
    delays: list[float] = []
    delay = base_s
    for _ in range(attempts):
        delays.append(min(delay, max_s))
        delay = min(delay * factor, max_s)  # capped as it grows, so it never overflows
    return delays


# ---------------------------------------------------------------------------
# 6. SSRF guard for webhook URLs
# ---------------------------------------------------------------------------

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_METADATA = ipaddress.ip_address("169.254.169.254")


def _public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is globally routable and not a special-purpose one."""
    if (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
        or not addr.is_global
    ):
        return False
    if isinstance(addr, ipaddress.IPv4Address):
        return addr not in _CGNAT and addr != _METADATA
    if addr.is_site_local:
        return False
    # IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo) are judged by it too.
    embedded = [addr.ipv4_mapped, addr.sixtofour]
    if addr.teredo is not None:
        embedded.extend(addr.teredo)
    return all(_public(v4) for v4 in embedded if v4 is not None)


def is_public_address(ip: str) -> bool:
    """Whether `ip` is a public unicast address a webhook may be sent to."""
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return _public(addr.ipv4_mapped)
    return _public(addr)


def webhook_url_problem(url: str) -> str | None:
    """Why a webhook URL is unusable on its face (None when it looks fine), before DNS."""
    if len(url) > 2048:
        return "webhook URL is too long (max 2048 characters)"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "webhook URL must not contain whitespace or control characters"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return "webhook URL is malformed"
    if parts.scheme.lower() not in ("http", "https"):
        return "webhook URL must use http or https"
    if not parts.hostname:
        return "webhook URL must name a host"
    if parts.username is not None or parts.password is not None:
        return "webhook URL must not contain credentials"
    return None


def check_webhook_url(url: str, resolved_ips: Sequence[str], allow_private: bool) -> str | None:
    """Why a webhook URL may not be called (None when it may), given its resolved addresses."""
    problem = webhook_url_problem(url)
    if problem is not None:
        return problem
    host = urlsplit(url).hostname or ""
    ips = list(resolved_ips)
    with contextlib.suppress(ValueError):  # an IP literal host checks itself
        ips.append(str(ipaddress.ip_address(host)))
    if not ips:
        return "webhook host did not resolve to any address"
    for ip in ips:
        try:
            ipaddress.ip_address(ip.strip())
        except ValueError:
            return f"webhook host resolved to an invalid address: {ip!r}"
        if not allow_private and not is_public_address(ip):
            return f"webhook host resolves to a non-public address: {ip}"
    return None


def jittered(delay_s: float, unit_random: float) -> float:
    """A retry delay spread over [delay/2, delay] so that many retries do not align."""
    return delay_s * (0.5 + 0.5 * min(max(unit_random, 0.0), 1.0))


# ---------------------------------------------------------------------------
# 7. Held alerts: released after quiet hours, or together in a digest
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# 8. Notification ids
# ---------------------------------------------------------------------------

_NOTIFICATION_ID = re.compile(r"^n[0-9a-f]{12}[0-9a-f]{12}$")


def new_notification_id(now_ms: int, random_hex: str | None = None) -> str:
    """A notification id that sorts by creation time: 'n' + 12 hex ms + 12 random hex."""
    suffix = random_hex if random_hex is not None else secrets.token_hex(6)
    return f"n{now_ms:012x}{suffix}"


def is_notification_id(text: str) -> bool:
    """Whether `text` has the form of a notification id (for cursors and Last-Event-ID)."""
    return _NOTIFICATION_ID.match(text) is not None


def notification_id_floor(ms: int) -> str:
    """The smallest possible id created at `ms`: ids below it are older."""
    return f"n{ms:012x}"
