"""The doctor directory's rules: what a profile stores, shows, and tells the alerts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
