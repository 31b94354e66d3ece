"""Use cases of the doctor directory: save a profile, show a card."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from shared import geo, taxonomy
from shared.atomic import CommitResult
from shared.backoff import until_done
from shared.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from shared.events import DoctorProfileChanged, Location
from shared.geo import PlaceQuery
from shared.logging import current_correlation_id, get_logger
from shared.metrics import EVENTS_PUBLISHED

from .. import SERVICE
from ..alerts.domain import parse_quiet_hours
from ..delivery.domain import new_webhook_secret, webhook_secret_key, webhook_url_problem
from .domain import (
    STATUSES,
    VERIFIED,
    alert_prefs,
    is_verified,
    npi_valid,
    nucc_code_valid,
    profile_view,
)

log = get_logger("askdoc.notify.directory")

SAVE_ATTEMPTS = 5


class NotYourProfile(Forbidden):
    """Only the doctor themself or an admin may edit a profile."""


class DoctorNotFound(NotFound):
    """No such doctor in the directory."""


class UnknownSpecialties(Invalid):
    """A specialty slug outside the vocabulary."""

    code = "unknown_specialties"


class UnknownPlace(Invalid):
    """The practice location could not be geocoded."""

    code = "unknown_place"


class InvalidQuietHours(Invalid):
    """Quiet hours that are not HH:MM times in a known time zone."""

    code = "invalid_quiet_hours"


class InvalidWebhookUrl(Invalid):
    """A webhook URL that can never be called."""

    code = "invalid_webhook_url"


class InvalidWebhookSecret(Invalid):
    """A webhook secret not in the Standard Webhooks form 'whsec_' + base64."""

    code = "invalid_webhook_secret"


class WebhooksUnavailable(DomainError):
    """Webhooks cannot be set: no key to seal their secrets is configured."""

    code = "webhooks_unavailable"


@dataclass(frozen=True)
class WebhookPolicy:
    """How webhooks may be set: sealing key present, plain http allowed, rotation window."""

    sealing: bool = True
    allow_http: bool = True
    rotation_s: float = 86400.0


class RatingSetByAdmins(Forbidden):
    """A doctor tried to change their own rating or review count."""

    code = "rating_set_by_admins"


class ProfileIncomplete(Invalid):
    """A PATCH of a doctor not yet in the directory lacks name, specialties or location."""

    code = "profile_incomplete"


class InvalidNpi(Invalid):
    """An NPI that is not 10 digits passing the Luhn check with the 80840 prefix."""

    code = "invalid_npi"


class InvalidTaxonomyCode(Invalid):
    """A taxonomy code that is not shaped like a NUCC code (e.g. 208200000X)."""

    code = "invalid_taxonomy_code"


class NpiRequired(Invalid):
    """Only a profile with an NPI can be verified."""

    code = "npi_required"


class UnknownStatus(Invalid):
    """A verification status outside pending, verified, suspended."""

    code = "unknown_status"


class StatusAdminOnly(Forbidden):
    """Only an admin changes a doctor's verification status."""

    code = "status_admin_only"


class ProfileChangedConcurrently(Conflict):
    """Other writers kept changing the profile; the client should retry."""


@dataclass(frozen=True)
class QuietWindow:
    """Quiet hours as given: 'HH:MM' start and end in an IANA time zone."""

    start: str
    end: str
    tz: str


@dataclass(frozen=True)
class SaveDoctorProfile:
    """Create or replace a doctor's profile (the whole profile).

    `webhook_secret` is write-only: with `keep_webhook_secret` (the client did not send
    one) the stored secret stays; without one (sent as null, or none stored) the server
    makes one. `email_alerts` None keeps the stored choice (an unsubscribe turns it off).
    """

    doctor_id: str
    actor_id: str
    actor_is_admin: bool
    name: str
    credentials: str
    specialties: tuple[str, ...]
    location: PlaceQuery
    radius_km: float
    rating: float | None = None
    review_count: int | None = None
    email: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    keep_webhook_secret: bool = False
    quiet_hours: QuietWindow | None = None
    daily_cap: int | None = None
    #: "rating" and/or "review_count": keep the stored value instead of this command's.
    keep: frozenset[str] = field(default_factory=frozenset)
    email_alerts: bool | None = None
    npi: str | None = None  # None keeps the stored one
    taxonomy_code: str | None = None  # None keeps the stored one (or the specialty's code)
    status: str | None = None  # None keeps the stored status; only admins change it


@dataclass(frozen=True)
class SetDoctorStatus:
    """An admin verifies, suspends or returns a doctor to pending."""

    doctor_id: str
    status: str
    actor_is_admin: bool


#: What only admins (and the import, which signs in as one) set on a doctor's card.
ADMIN_ONLY = ("rating", "review_count")


@dataclass(frozen=True)
class PatchDoctorProfile:
    """Change some fields of a profile; the others stay as stored.

    `changes` maps SaveDoctorProfile field names to new values (None clears an optional
    field). Where no profile exists yet, the changes must hold name, specialties and
    location: a PATCH then creates it.
    """

    doctor_id: str
    actor_id: str
    actor_is_admin: bool
    changes: Mapping[str, Any]


class ProfileStore(Protocol):
    """What the directory's use cases need from its store."""

    async def get(self, doctor_id: str) -> tuple[dict[str, Any], int] | None:
        """A stored profile and its version, or None."""
        ...

    async def save(
        self,
        profile: dict[str, Any],
        previous_specialties: list[str],
        all_specialties: list[str],
        prefs: dict[str, Any],
        event: DoctorProfileChanged,
    ) -> CommitResult:
        """Store a profile version, move the doctor in the indexes and publish, atomically."""
        ...

    async def pending(self, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The doctors waiting longest for verification, and how many wait."""
        ...

    async def index_old_pending(self) -> int:
        """List the waiting doctors saved before the list existed (once); how many."""
        ...


#: Told when a doctor's alert preferences may have changed (the alerts re-plan holds).
ProfileSaved = Callable[[str, datetime], Awaitable[None]]


class DirectoryService:
    """Doctor profiles: validated, versioned, announced with doctor-profile-changed."""

    def __init__(
        self,
        store: ProfileStore,
        on_saved: ProfileSaved | None = None,
        webhooks: WebhookPolicy | None = None,
    ) -> None:
        self.store = store
        self.on_saved = on_saved
        self.webhooks = webhooks or WebhookPolicy()

    async def save_profile(self, cmd: SaveDoctorProfile) -> dict[str, Any]:
        """Create or replace a doctor's profile; index it and announce it in one step."""
        if not cmd.actor_is_admin and cmd.actor_id != cmd.doctor_id:
            raise NotYourProfile("a doctor may only edit their own profile")
        specialties = _specialties(cmd.specialties)
        npi, taxonomy_code = _credentials_ids(cmd.npi, cmd.taxonomy_code)
        if cmd.status is not None and cmd.status not in STATUSES:
            raise UnknownStatus(f"status must be one of {', '.join(STATUSES)}")
        place = await _geocode(cmd.location)
        quiet_hours = None
        if cmd.quiet_hours is not None:
            qh = cmd.quiet_hours
            try:
                parse_quiet_hours(qh.start, qh.end, qh.tz)
            except ValueError as exc:
                raise InvalidQuietHours(str(exc)) from None
            quiet_hours = {"start": qh.start, "end": qh.end, "tz": qh.tz}
        if cmd.webhook_url is not None:
            if not self.webhooks.sealing:
                raise WebhooksUnavailable("webhooks are not enabled on this server")
            problem = webhook_url_problem(cmd.webhook_url, allow_http=self.webhooks.allow_http)
            if problem is not None:
                raise InvalidWebhookUrl(problem)
        if cmd.webhook_secret is not None:
            try:
                webhook_secret_key(cmd.webhook_secret)
            except ValueError as exc:
                raise InvalidWebhookSecret(str(exc)) from None
        location = {
            "city": place.city,
            "state": place.state,
            "zip": place.zip,
            "lat": place.lat,
            "lon": place.lon,
        }
        all_slugs = [s.slug for s in taxonomy.specialties()]
        for _ in range(SAVE_ATTEMPTS):
            stored = await self.store.get(cmd.doctor_id)
            old, version = stored if stored else ({}, 0)
            rating, review_count = _card_numbers(cmd, old)
            # Left out of a PUT, the NPI and taxonomy code stay as stored.
            npi_now = npi or old.get("npi")
            code_now = (
                taxonomy_code
                or old.get("taxonomy_code")
                or taxonomy.get_specialty(specialties[0]).nucc_code
            )
            status = _next_status(old, cmd, npi_now)
            now = datetime.now(UTC)
            hook = _webhook_fields(cmd, old, now.timestamp(), self.webhooks.rotation_s)
            profile: dict[str, Any] = {
                "id": cmd.doctor_id,
                "name": cmd.name,
                "credentials": cmd.credentials,
                "specialties": specialties,
                "location": location,
                "radius_km": cmd.radius_km,
                "rating": rating,
                "review_count": review_count,
                "email": cmd.email,
                **hook,
                "email_off": bool(old.get("email_off"))
                if cmd.email_alerts is None
                else not cmd.email_alerts,
                "quiet_hours": quiet_hours,
                "daily_cap": cmd.daily_cap,
                "npi": npi_now,
                "taxonomy_code": code_now,
                "status": status,
                "profile_version": version + 1,
                "updated_at": now.isoformat(),
            }
            event = _announcement(profile, now)
            result = await self.store.save(
                profile, old.get("specialties", []), all_slugs, alert_prefs(profile), event
            )
            if result.applied:
                break
        else:
            raise ProfileChangedConcurrently("the profile changed concurrently; try again")
        EVENTS_PUBLISHED.labels(SERVICE, event.stream).inc()
        if self.on_saved is not None:
            await self.on_saved(cmd.doctor_id, now)
        log.info(
            "doctor_profile_saved",
            doctor_id=cmd.doctor_id,
            profile_version=version + 1,
            specialties=specialties,
        )
        view = profile_view(profile, private=True)
        if profile["webhook_secret"] and profile["webhook_secret"] != old.get("webhook_secret"):
            # Shown once, in the reply that set it; never again.
            view["webhook_secret"] = profile["webhook_secret"]
        return view

    async def switch_off(self, doctor_id: str, channel: str) -> bool:
        """Turn an external channel off (a 410 from the webhook, an e-mail unsubscribe);
        False when it was off already or the doctor is unknown."""
        flag = {"webhook": "webhook_off", "email": "email_off"}[channel]
        for _ in range(SAVE_ATTEMPTS):
            stored = await self.store.get(doctor_id)
            if stored is None or stored[0].get(flag):
                return False
            old, version = stored
            now = datetime.now(UTC)
            profile = {
                **old,
                flag: True,
                "profile_version": version + 1,
                "updated_at": now.isoformat(),
            }
            result = await self.store.save(
                profile,
                old.get("specialties", []),
                [s.slug for s in taxonomy.specialties()],
                alert_prefs(profile),
                _announcement(profile, now),
            )
            if result.applied:
                EVENTS_PUBLISHED.labels(SERVICE, DoctorProfileChanged.stream).inc()
                log.info("doctor_channel_switched_off", doctor_id=doctor_id, channel=channel)
                return True
        raise ProfileChangedConcurrently("the profile changed concurrently; try again")

    async def patch_profile(self, cmd: PatchDoctorProfile) -> dict[str, Any]:
        """Change the given fields of a profile, keeping every other one as stored."""
        if not cmd.actor_is_admin and cmd.actor_id != cmd.doctor_id:
            raise NotYourProfile("a doctor may only edit their own profile")
        stored = await self.store.get(cmd.doctor_id)
        fresh = {"credentials": "", "radius_km": 50.0}  # DoctorIn's defaults for a new profile
        merged = {**fresh, **_as_command_fields(stored[0] if stored else {}), **cmd.changes}
        missing = [f for f in ("name", "specialties", "location") if not merged.get(f)]
        if missing:
            raise ProfileIncomplete(
                f"no profile for {cmd.doctor_id!r} yet: give {', '.join(missing)} to create it"
            )
        save = SaveDoctorProfile(
            doctor_id=cmd.doctor_id,
            actor_id=cmd.actor_id,
            actor_is_admin=cmd.actor_is_admin,
            keep_webhook_secret="webhook_secret" not in cmd.changes,
            keep=frozenset(f for f in ADMIN_ONLY if f not in cmd.changes),
            **merged,
        )
        return await self.save_profile(save)

    async def pending_doctors(self, actor_is_admin: bool, limit: int) -> dict[str, Any]:
        """The doctors waiting for an admin to verify them, the longest waiting first."""
        if not actor_is_admin:
            raise StatusAdminOnly("only an admin lists the doctors waiting for verification")
        profiles, total = await self.store.pending(limit)
        return {"items": [profile_view(p, private=False) for p in profiles], "total": total}

    async def index_old_pending(self) -> None:
        """Background, once: doctors saved before the waiting list existed who still wait
        join it, so the admins' list shows them without their profile being saved again."""
        listed = await until_done(self.store.index_old_pending, "pending_indexing_failed", log)
        if listed:
            log.info("old_pending_doctors_listed", doctors=listed)

    async def set_status(self, cmd: SetDoctorStatus) -> dict[str, Any]:
        """Move a doctor between pending, verified and suspended; announce it like any change."""
        if not cmd.actor_is_admin:
            raise StatusAdminOnly("only an admin changes a doctor's verification status")
        if cmd.status not in STATUSES:
            raise UnknownStatus(f"status must be one of {', '.join(STATUSES)}")
        for _ in range(SAVE_ATTEMPTS):
            stored = await self.store.get(cmd.doctor_id)
            if stored is None:
                raise DoctorNotFound(f"no doctor {cmd.doctor_id!r}")
            old, version = stored
            if cmd.status == VERIFIED and not old.get("npi"):
                raise NpiRequired("a doctor needs an NPI on their profile to be verified")
            if (old.get("status") or "pending") == cmd.status:
                return profile_view(old, private=True)
            now = datetime.now(UTC)
            profile = {
                **old,
                "status": cmd.status,
                "profile_version": version + 1,
                "updated_at": now.isoformat(),
            }
            event = _announcement(profile, now)
            result = await self.store.save(
                profile,
                old.get("specialties", []),
                [s.slug for s in taxonomy.specialties()],
                alert_prefs(profile),
                event,
            )
            if result.applied:
                break
        else:
            raise ProfileChangedConcurrently("the profile changed concurrently; try again")
        EVENTS_PUBLISHED.labels(SERVICE, event.stream).inc()
        log.info(
            "doctor_status_changed",
            doctor_id=cmd.doctor_id,
            status=cmd.status,
            profile_version=version + 1,
        )
        return profile_view(profile, private=True)

    async def profile(
        self, doctor_id: str, viewer_id: str | None, viewer_is_admin: bool
    ) -> dict[str, Any]:
        """A doctor's card; private fields only for the doctor themself or an admin."""
        stored = await self.store.get(doctor_id)
        if stored is None:
            raise DoctorNotFound(f"no doctor {doctor_id!r}")
        private = viewer_is_admin or (viewer_id is not None and viewer_id == doctor_id)
        return profile_view(stored[0], private=private)


def _card_numbers(cmd: SaveDoctorProfile, old: dict[str, Any]) -> tuple[float | None, int]:
    """The rating and review count to store; RatingSetByAdmins if a doctor changes them."""
    stored = (old.get("rating"), int(old.get("review_count") or 0))
    given = (
        stored[0] if "rating" in cmd.keep else cmd.rating,
        stored[1] if "review_count" in cmd.keep else int(cmd.review_count or 0),
    )
    if not cmd.actor_is_admin and given != stored:
        raise RatingSetByAdmins(
            "rating and review_count are set by admins (or the import), not by the doctor; "
            "leave them out, or send the values the card shows"
        )
    return given


def _as_command_fields(profile: dict[str, Any]) -> dict[str, Any]:
    """A stored profile as SaveDoctorProfile fields (the base a PATCH changes)."""
    if not profile:
        return {}
    loc = profile.get("location") or {}
    qh = profile.get("quiet_hours")
    return {
        "name": profile.get("name"),
        "credentials": profile.get("credentials") or "",
        "specialties": tuple(profile.get("specialties") or ()),
        "location": PlaceQuery(
            loc.get("zip"), loc.get("city"), loc.get("state"), loc.get("lat"), loc.get("lon")
        )
        if loc
        else None,
        "radius_km": profile.get("radius_km", 50),
        "rating": profile.get("rating"),
        "review_count": profile.get("review_count") or 0,
        "email": profile.get("email"),
        "webhook_url": profile.get("webhook_url"),
        "quiet_hours": QuietWindow(qh["start"], qh["end"], qh["tz"]) if qh else None,
        "daily_cap": profile.get("daily_cap"),
    }


def _webhook_fields(
    cmd: SaveDoctorProfile, old: dict[str, Any], now_s: float, rotation_s: float
) -> dict[str, Any]:
    """The webhook part of a new profile version: URL, secret (kept, given or made), the
    previous secret while a rotation lasts, and whether a 410 switched it off."""
    if cmd.webhook_url is None:
        return {"webhook_url": None, "webhook_secret": None, "webhook_off": False}
    stored = old.get("webhook_secret")
    # The secret is never shown again, so a client that GETs and PUTs its profile back
    # cannot resend it: leaving the field out keeps the stored one.
    if cmd.keep_webhook_secret and stored:
        secret = stored
    else:
        secret = cmd.webhook_secret or new_webhook_secret()
    fields: dict[str, Any] = {"webhook_url": cmd.webhook_url, "webhook_secret": secret}
    if stored and secret != stored:
        fields["webhook_secret_previous"] = stored
        fields["webhook_secret_previous_until"] = now_s + rotation_s
    elif old.get("webhook_secret_previous_until", 0) > now_s:
        fields["webhook_secret_previous"] = old.get("webhook_secret_previous")
        fields["webhook_secret_previous_until"] = old["webhook_secret_previous_until"]
    # Switched off by a 410 until the doctor changes the URL or the secret.
    same = cmd.webhook_url == old.get("webhook_url") and secret == stored
    fields["webhook_off"] = bool(old.get("webhook_off")) and same
    return fields


def _announcement(profile: dict[str, Any], now: datetime) -> DoctorProfileChanged:
    """The doctor-profile-changed event of a stored profile version."""
    return DoctorProfileChanged(
        correlation_id=current_correlation_id(),
        producer=SERVICE,
        doctor_id=profile["id"],
        name=profile["name"],
        credentials=profile["credentials"],
        specialties=profile["specialties"],
        location=Location(**profile["location"]),
        radius_km=profile["radius_km"],
        rating=profile.get("rating"),
        review_count=profile.get("review_count") or 0,
        status=profile.get("status") or "pending",
        profile_version=profile["profile_version"],
        occurred_at=now,
    )


def _credentials_ids(npi: str | None, taxonomy_code: str | None) -> tuple[str | None, str | None]:
    """The NPI and NUCC code as given, checked."""
    if npi is not None and not npi_valid(npi):
        raise InvalidNpi("npi must be 10 digits with a valid check digit (Luhn, prefix 80840)")
    if taxonomy_code is not None and not nucc_code_valid(taxonomy_code):
        raise InvalidTaxonomyCode("taxonomy_code must be a NUCC code such as 208200000X")
    return npi, taxonomy_code


def _next_status(old: dict[str, Any], cmd: SaveDoctorProfile, npi: str | None) -> str:
    """The status a saved profile gets: kept, set by an admin, or back to pending."""
    stored = old.get("status") or "pending"
    if cmd.status is not None and cmd.status != stored:
        if not cmd.actor_is_admin:
            raise StatusAdminOnly("only an admin changes a doctor's verification status")
        stored = cmd.status
    elif not cmd.actor_is_admin and is_verified(old) and npi != old.get("npi"):
        # Verification vouched for one NPI: a doctor who changes it is checked again.
        stored = "pending"
    if stored == VERIFIED and not npi:
        raise NpiRequired("a doctor needs an NPI on their profile to be verified")
    return stored


def _specialties(values: tuple[str, ...]) -> list[str]:
    slugs = [taxonomy.normalize_slug(v) for v in values]
    unknown = [v for v, s in zip(values, slugs, strict=True) if not taxonomy.is_specialty(s)]
    if unknown:
        raise UnknownSpecialties(f"unknown specialties: {', '.join(unknown)} (see GET /taxonomy)")
    return list(dict.fromkeys(slugs))


async def _geocode(loc: PlaceQuery) -> geo.Place:
    try:
        # Cold gazetteer indexes take a second to build; keep the loop free.
        return await asyncio.to_thread(loc.locate)
    except geo.UnknownPlace as exc:
        raise UnknownPlace(str(exc)) from None
