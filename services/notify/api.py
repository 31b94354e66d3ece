"""HTTP routes of the notify service: the doctor directory and inboxes.

Routes turn requests into commands for the service layer, and its domain exceptions
into statuses through the one table `STATUSES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.auth import Principal, StreamUser, User
from shared.errors import DomainError
from shared.http import AnyReader, IdempotencyKey, writer
from shared.ids import ResourceId
from shared.schemas import LocationIn
from shared.sse import EventStream

from .delivery.mail import UNSUBSCRIBE_PATH
from .directory.service import (
    ADMIN_ONLY,
    DirectoryService,
    PatchDoctorProfile,
    QuietWindow,
    SaveDoctorProfile,
    SetDoctorStatus,
    WebhooksUnavailable,
)
from .inbox.live import LiveStreams
from .inbox.service import BadCursor, InboxService, ListInbox, MarkRead
from .parts import NotifyParts

router = APIRouter(tags=["notify"])

#: Domain exceptions whose status is not the base one of their kind (shared.errors).
STATUSES: Mapping[type[DomainError], int] = {BadCursor: 400, WebhooksUnavailable: 503}

Editor = Annotated[Principal, writer("doctor", "admin")]
Admin = Annotated[Principal, writer("admin")]
Status = Literal["pending", "verified", "suspended"]
Reader = Annotated[Principal, writer()]
DoctorId = ResourceId
NotificationId = ResourceId


class QuietHoursIn(BaseModel):
    """A daily do-not-disturb window in the doctor's local time (may cross midnight)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    start: str = Field(pattern=r"^\d{2}:\d{2}$", examples=["22:00"])
    end: str = Field(pattern=r"^\d{2}:\d{2}$", examples=["07:00"])
    tz: str = Field(min_length=1, max_length=64, examples=["America/Los_Angeles"])


class DoctorIn(BaseModel):
    """A doctor's directory profile and alert preferences (the whole profile: PUT replaces).

    `rating` and `review_count` are set by admins and the import: an admin's PUT replaces
    them (left out: cleared); a doctor's PUT keeps the stored ones when left out, and gets
    403 `rating_set_by_admins` if it sends other values.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=120, examples=["Jon A. Perlman"])
    credentials: str = Field("", max_length=200, examples=["MD, FACS"])
    specialties: list[Annotated[str, Field(min_length=1, max_length=80)]] = Field(
        min_length=1, max_length=10, description="Specialty slugs (see GET /taxonomy)"
    )
    location: LocationIn
    radius_km: float = Field(50, ge=1, le=500, description="Alert radius around the practice")
    rating: float | None = Field(None, ge=0, le=5)
    review_count: int | None = Field(None, ge=0, le=10_000_000)
    email: str | None = Field(
        None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", description="Private"
    )
    webhook_url: str | None = Field(
        None, max_length=2048, description="Private; https (Standard Webhooks deliveries)"
    )
    webhook_secret: str | None = Field(
        None,
        min_length=38,
        max_length=128,
        pattern=r"^whsec_[A-Za-z0-9+/]+=*$",
        description="Private, write-only: 'whsec_' + base64 of 24-64 bytes. Left out of a "
        "PUT it keeps the stored one (or the server makes one); null makes a new one. A new "
        "secret is shown once, in the reply; the previous one still signs for a while",
    )
    email_alerts: bool | None = Field(
        None, description="Alerts by e-mail on or off; left out it stays as it is"
    )
    quiet_hours: QuietHoursIn | None = None
    daily_cap: int | None = Field(None, ge=1, le=1000, description="Routine alerts per local day")
    npi: str | None = Field(
        None,
        max_length=10,
        examples=["1234567893"],
        description="National Provider Identifier (10 digits, Luhn check with prefix 80840); "
        "left out of a PUT it keeps the stored one",
    )
    taxonomy_code: str | None = Field(
        None,
        max_length=10,
        examples=["208200000X"],
        description="NUCC provider taxonomy code of the NPI; defaults to the primary specialty's",
    )
    status: Status | None = Field(
        None, description="Verification status: admins only; left out it stays as it is"
    )

    def command(self, doctor_id: str, actor: Principal) -> SaveDoctorProfile:
        """The service layer's command for this body, sent by `actor`."""
        loc, qh = self.location, self.quiet_hours
        return SaveDoctorProfile(
            doctor_id=doctor_id,
            actor_id=actor.sub,
            actor_is_admin=actor.role == "admin",
            name=self.name,
            credentials=self.credentials,
            specialties=tuple(self.specialties),
            location=loc.query(),
            radius_km=self.radius_km,
            rating=self.rating,
            review_count=self.review_count,
            email=self.email,
            webhook_url=self.webhook_url,
            webhook_secret=self.webhook_secret,
            # The secret is write-only: a body without it keeps the stored one.
            keep_webhook_secret="webhook_secret" not in self.model_fields_set,
            quiet_hours=QuietWindow(qh.start, qh.end, qh.tz) if qh is not None else None,
            daily_cap=self.daily_cap,
            keep=frozenset()
            if actor.role == "admin"
            else frozenset(f for f in ADMIN_ONLY if f not in self.model_fields_set),
            email_alerts=self.email_alerts,
            npi=self.npi,
            taxonomy_code=self.taxonomy_code,
            status=self.status,
        )


class StatusIn(BaseModel):
    """A doctor's new verification status."""

    model_config = ConfigDict(extra="forbid")

    status: Status


#: Fields a PATCH may not set to null (the profile cannot be without them).
_REQUIRED_IN_PATCH = ("name", "credentials", "specialties", "location", "radius_km")


class DoctorPatch(BaseModel):
    """Some fields of a doctor's profile; the ones left out stay as stored.

    null clears an optional field (email, webhook_url, quiet_hours, daily_cap, rating).
    A doctor's PATCH that changes `rating` or `review_count` gets 403.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(None, min_length=1, max_length=120)
    credentials: str | None = Field(None, max_length=200)
    specialties: list[Annotated[str, Field(min_length=1, max_length=80)]] | None = Field(
        None, min_length=1, max_length=10
    )
    location: LocationIn | None = None
    radius_km: float | None = Field(None, ge=1, le=500)
    rating: float | None = Field(None, ge=0, le=5)
    review_count: int | None = Field(None, ge=0, le=10_000_000)
    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    webhook_url: str | None = Field(None, max_length=2048)
    webhook_secret: str | None = Field(None, min_length=16, max_length=256)
    quiet_hours: QuietHoursIn | None = None
    daily_cap: int | None = Field(None, ge=1, le=1000)
    npi: str | None = Field(None, max_length=10, description="National Provider Identifier")
    taxonomy_code: str | None = Field(None, max_length=10, description="NUCC taxonomy code")
    status: Status | None = Field(None, description="Verification status (admins only)")

    @model_validator(mode="after")
    def _no_null_for_required(self) -> DoctorPatch:
        nulled = [
            f for f in _REQUIRED_IN_PATCH if f in self.model_fields_set and getattr(self, f) is None
        ]
        if nulled:
            raise ValueError(f"{', '.join(nulled)} cannot be null; leave them out to keep them")
        return self

    def command(self, doctor_id: str, actor: Principal) -> PatchDoctorProfile:
        """The service layer's command for this body, sent by `actor`."""
        changes: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name == "specialties" and value is not None:
                value = tuple(value)
            elif name == "location" and value is not None:
                value = value.query()
            elif name == "quiet_hours" and value is not None:
                value = QuietWindow(value.start, value.end, value.tz)
            changes[name] = value
        return PatchDoctorProfile(doctor_id, actor.sub, actor.role == "admin", changes)


def notify_parts(request: Request) -> NotifyParts:
    """The notifier's use cases, built by create_app."""
    parts: NotifyParts = request.app.state.parts
    return parts


def directory_service(request: Request) -> DirectoryService:
    """The doctor directory's use cases."""
    return notify_parts(request).directory


def inbox_service(request: Request) -> InboxService:
    """The inboxes' use cases."""
    return notify_parts(request).inbox


@router.put("/doctors/{doctor_id}", summary="Create or replace a doctor's profile")
async def put_doctor(
    doctor_id: DoctorId, payload: DoctorIn, request: Request, user: Editor
) -> dict[str, Any]:
    """The doctor themself or an admin; publishes doctor-profile-changed atomically."""
    return await directory_service(request).save_profile(payload.command(doctor_id, user))


@router.put("/doctors/{doctor_id}/status", summary="Verify or suspend a doctor (admins)")
async def put_doctor_status(
    doctor_id: DoctorId, payload: StatusIn, request: Request, user: Admin
) -> dict[str, Any]:
    """Only verified doctors are alerted and may answer; publishes doctor-profile-changed."""
    command = SetDoctorStatus(doctor_id, payload.status, actor_is_admin=user.role == "admin")
    return await directory_service(request).set_status(command)


@router.patch("/doctors/{doctor_id}", summary="Change some fields of a doctor's profile")
async def patch_doctor(
    doctor_id: DoctorId, payload: DoctorPatch, request: Request, user: Editor
) -> dict[str, Any]:
    """The doctor themself or an admin; fields left out keep their stored values."""
    return await directory_service(request).patch_profile(payload.command(doctor_id, user))


@router.get("/doctors", summary="Doctors waiting for verification (admins)")
async def list_pending_doctors(
    request: Request,
    user: Admin,
    status: Annotated[Literal["pending"], Query()] = "pending",
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> dict[str, Any]:
    """`items`: the public cards (with NPI) of the doctors waiting longest; `total` waiting.

    Doctors who registered before this listing existed appear once their profile is saved
    again (any change, or an admin's status).
    """
    return await directory_service(request).pending_doctors(user.role == "admin", limit)


@router.get("/doctors/{doctor_id}", summary="A doctor's public card")
async def get_doctor(doctor_id: DoctorId, request: Request, user: AnyReader) -> dict[str, Any]:
    """No contact data, unless the doctor themself (or an admin) asks."""
    viewer_id = user.sub if user is not None else None
    is_admin = user is not None and user.role == "admin"
    return await directory_service(request).profile(doctor_id, viewer_id, is_admin)


@router.get("/inbox", summary="Your notifications, newest first")
async def get_inbox(
    request: Request,
    user: User,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    unread: bool = False,
) -> dict[str, Any]:
    """Items with why each was sent (`reason`) and per-channel delivery status."""
    return await inbox_service(request).page(ListInbox(user.sub, limit, cursor, unread))


@router.post("/inbox/{notification_id}/read", summary="Mark a notification read")
async def mark_read(
    notification_id: NotificationId,
    request: Request,
    user: Reader,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Idempotent by nature: repeating it (with or without Idempotency-Key) changes nothing."""
    return await inbox_service(request).mark_read(MarkRead(user.sub, notification_id))


@router.get(
    "/inbox/stream",
    summary="Your notifications as server-sent events",
    response_class=EventStream,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def inbox_stream(
    request: Request,
    user: StreamUser,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> EventStream:
    """`id:` is the notification id; reconnect with Last-Event-ID to get what you missed.

    `event: notification` carries an inbox item; `event: withdrawn` (no `id:`), data
    `{"ids": [...], "unread": [...]}`, names items a moderator's hiding just took out of the inbox
    (and which of them were unread);
    `event: restored` (no `id:`), data `{"items": [...]}`, carries the items a restore
    just brought back, as the inbox lists them (each newer or older than others). The
    stream ends with a `token-expired` event when the token does (reconnect with a
    fresh one); a user holds at most ASKDOC_SSE_MAX_STREAMS_PER_USER streams (429).
    """
    live: LiveStreams = request.app.state.live_streams
    body = await live.open(user.sub, user.expires_at, last_event_id)
    return EventStream(body, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


Recipient = Annotated[str, Query(alias="r", min_length=1, max_length=64)]
Token = Annotated[str, Query(alias="t", min_length=1, max_length=64)]


@router.get(UNSUBSCRIBE_PATH, summary="Confirm stopping alert e-mails", response_class=HTMLResponse)
async def unsubscribe_page(request: Request, recipient: Recipient, token: Token) -> HTMLResponse:
    """The link in an e-mail: asks to confirm (a GET never unsubscribes: link scanners)."""
    notify_parts(request).opt_out.check(recipient, token)
    return HTMLResponse(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Stop alert e-mails</title></head><body><main>"
        "<h1>Stop alert e-mails from askdoc?</h1>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Stop e-mails</button></form>'
        f'<p>Or change your alerts in <a href="{escape(_settings_url(request))}">settings</a>.</p>'
        "</main></body></html>"
    )


@router.post(UNSUBSCRIBE_PATH, summary="One-click unsubscribe (RFC 8058)")
async def unsubscribe(
    request: Request,
    recipient: Recipient,
    token: Token,
) -> dict[str, Any]:
    """Signed by the link itself, no sign-in: turns alert e-mails off for its recipient.

    The body (`List-Unsubscribe=One-Click`, RFC 8058) is not needed to act on.
    """
    await notify_parts(request).opt_out.unsubscribe(recipient, token)
    return {"email_alerts": False}


def _settings_url(request: Request) -> str:
    settings = inbox_service(request).settings
    return f"{settings.public_url.rstrip('/')}/settings"
