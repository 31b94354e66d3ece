"""The doctor directory's rules: what a profile stores, shows, and tells the alerts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: Verification states of a profile; only a verified doctor is alerted and may answer.
STATUSES = ("pending", "verified", "suspended")
VERIFIED = "verified"
# CMS: an NPI is 9 digits and a Luhn check digit computed with the card-issuer prefix 80840.
_NPI = re.compile(r"^[0-9]{10}$")
_NPI_PREFIX = "80840"
# NUCC Health Care Provider Taxonomy code: 3 digits, 6 alphanumerics, then X.
_NUCC_CODE = re.compile(r"^[0-9]{3}[0-9A-Z]{6}X$")


@dataclass(frozen=True)
class DoctorRow:
    """What matching needs of a directory entry, fetched for many doctors at once."""

    doctor_id: str
    lat: float
    lon: float
    radius_km: float
    rating: float
    review_count: int
    tz: str | None


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (its last digit is the check digit)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def npi_valid(npi: str) -> bool:
    """Whether `npi` is a well-formed National Provider Identifier (10 digits, Luhn with 80840)."""
    return bool(_NPI.match(npi)) and luhn_valid(_NPI_PREFIX + npi)


def npi_check_digit(first_nine: str) -> str:
    """The check digit that makes `first_nine` + it a valid NPI (for test and demo data)."""
    return next(d for d in "0123456789" if luhn_valid(_NPI_PREFIX + first_nine + d))


def nucc_code_valid(code: str) -> bool:
    """Whether `code` has the shape of a NUCC provider taxonomy code (e.g. 208200000X)."""
    return bool(_NUCC_CODE.match(code))


def is_verified(profile: dict[str, Any]) -> bool:
    """Whether the doctor may be alerted and answer (profiles from before verification: no)."""
    return profile.get("status") == VERIFIED


def rating_score(rating: float | None, review_count: int) -> float:
    """Sort key of the per-specialty rating index: rating, then review count."""
    return round((rating or 0.0) * 1_000_000 + min(review_count, 999_999), 1)


def alert_prefs(profile: dict[str, Any]) -> dict[str, Any]:
    """What the alerts read of a profile: quiet hours, daily cap, external channels."""
    on = (
        ("webhook", profile.get("webhook_url") and not profile.get("webhook_off")),
        ("email", profile.get("email") and not profile.get("email_off")),
    )
    return {
        "quiet_hours": profile.get("quiet_hours"),
        "daily_cap": profile.get("daily_cap"),
        "channels": [channel for channel, value in on if value],
        # held alerts of a doctor suspended meanwhile never go out
        "verified": is_verified(profile),
    }


def profile_view(profile: dict[str, Any], private: bool) -> dict[str, Any]:
    """The profile as shown: the public card, plus alert settings for its owner."""
    loc = profile["location"]
    view: dict[str, Any] = {
        "id": profile["id"],
        "name": profile["name"],
        "credentials": profile["credentials"],
        "specialties": profile["specialties"],
        "specialty": profile["specialties"][0] if profile["specialties"] else None,
        "city": loc.get("city"),
        "state": loc.get("state"),
        "location": loc,
        "radius_km": profile["radius_km"],
        "rating": profile.get("rating"),
        "review_count": profile.get("review_count") or 0,
        "npi": profile.get("npi"),
        "taxonomy_code": profile.get("taxonomy_code"),
        "status": profile.get("status") or "pending",
        "verified": is_verified(profile),
        "profile_version": profile["profile_version"],
        "updated_at": profile["updated_at"],
    }
    if private:
        view.update(
            email=profile.get("email"),
            webhook_url=profile.get("webhook_url"),
            has_webhook_secret=bool(profile.get("webhook_secret")),
            webhook_off=bool(profile.get("webhook_off")),
            email_alerts=not profile.get("email_off"),
            quiet_hours=profile.get("quiet_hours"),
            daily_cap=profile.get("daily_cap"),
        )
    return view
