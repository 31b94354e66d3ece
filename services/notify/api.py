"""HTTP routes of the notify service: the doctor directory and inboxes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from shared.auth import MaybeUser, Principal, StreamUser, User
from shared.errors import ApiError
from shared.http import IdempotencyKey, writer

from .live import LiveHub, sse_stream
from .service import NotifyService

router = APIRouter(tags=["notify"])

Editor = Annotated[Principal, writer("doctor", "admin")]
Reader = Annotated[Principal, writer()]
DoctorId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:@|-]+$")]
NotificationId = Annotated[str, Path(max_length=64)]


class LocationIn(BaseModel):
    """Where the doctor practises: a ZIP code, a city and state, or coordinates."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    zip: str | None = Field(None, pattern=r"^\d{5}(-\d{4})?$", examples=["90210"])
    city: str | None = Field(None, min_length=1, max_length=100, examples=["Beverly Hills"])
    state: str | None = Field(None, min_length=2, max_length=40, examples=["CA"])
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


class QuietHoursIn(BaseModel):
    """A daily do-not-disturb window in the doctor's local time (may cross midnight)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    start: str = Field(pattern=r"^\d{2}:\d{2}$", examples=["22:00"])
    end: str = Field(pattern=r"^\d{2}:\d{2}$", examples=["07:00"])
    tz: str = Field(min_length=1, max_length=64, examples=["America/Los_Angeles"])


class DoctorIn(BaseModel):
    """A doctor's directory profile and alert preferences (the whole profile: PUT replaces)."""

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
    webhook_url: str | None = Field(None, max_length=2048, description="Private")
    webhook_secret: str | None = Field(
        None,
        min_length=16,
        max_length=256,
        description="Private, write-only; left out of a PUT it keeps the stored one",
    )
    quiet_hours: QuietHoursIn | None = None
    daily_cap: int | None = Field(None, ge=1, le=1000, description="Routine alerts per local day")


def _app(request: Request) -> NotifyService:
    svc: NotifyService = request.app.state.service
    return svc


@router.put("/doctors/{doctor_id}", summary="Create or replace a doctor's profile")
async def put_doctor(
    doctor_id: DoctorId, payload: DoctorIn, request: Request, user: Editor
) -> dict[str, Any]:
    """The doctor themself or an admin; publishes doctor-profile-changed atomically."""
    return await _app(request).put_doctor(user, doctor_id, payload)


@router.get("/doctors/{doctor_id}", summary="A doctor's public card")
async def get_doctor(doctor_id: DoctorId, request: Request, user: MaybeUser) -> dict[str, Any]:
    """No contact data, unless the doctor themself (or an admin) asks."""
    card = await _app(request).get_doctor(doctor_id, user)
    if card is None:
        raise ApiError(404, "not_found", f"no doctor {doctor_id!r}")
    return card


@router.get("/inbox", summary="Your notifications, newest first")
async def get_inbox(
    request: Request,
    user: User,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    unread: bool = False,
) -> dict[str, Any]:
    """Items with why each was sent (`reason`) and per-channel delivery status."""
    return await _app(request).inbox_page(user, limit, cursor, unread)


@router.post("/inbox/{notification_id}/read", summary="Mark a notification read")
async def mark_read(
    notification_id: NotificationId,
    request: Request,
    user: Reader,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Idempotent by nature: repeating it (with or without Idempotency-Key) changes nothing."""
    return await _app(request).mark_read(user, notification_id)


@router.get(
    "/inbox/stream",
    summary="Your notifications as server-sent events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def inbox_stream(
    request: Request,
    user: StreamUser,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> StreamingResponse:
    """`id:` is the notification id; reconnect with Last-Event-ID to get what you missed."""
    hub: LiveHub = request.app.state.hub
    service = _app(request)
    body = sse_stream(
        hub,
        user.sub,
        lambda after: service.items_after(user.sub, after),
        last_event_id,
        service.settings.sse_heartbeat_s,
    )
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
