"""notify's directory and inbox use cases against hand-written fakes of their stores."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from services.notify.delivery.domain import new_webhook_secret
from services.notify.directory.service import (
    DirectoryService,
    DoctorNotFound,
    InvalidQuietHours,
    InvalidWebhookSecret,
    InvalidWebhookUrl,
    NotYourProfile,
    PatchDoctorProfile,
    ProfileChangedConcurrently,
    ProfileIncomplete,
    QuietWindow,
    RatingSetByAdmins,
    SaveDoctorProfile,
    SetDoctorStatus,
    StatusAdminOnly,
    UnknownSpecialties,
    WebhookPolicy,
    WebhooksUnavailable,
)
from services.notify.inbox.domain import new_item, new_notification_id
from services.notify.inbox.service import (
    BadCursor,
    InboxService,
    ListInbox,
    MarkRead,
    NotificationNotFound,
)
from services.notify.settings import NotifySettings
from shared.geo import PlaceQuery
from tests.support import made_up_npi
from tests.unit.notify_fakes import FakeInbox, FakeProfileStore

SETTINGS = NotifySettings(jwt_secret="x" * 32, inbox_max_items=3)  # type: ignore[call-arg]
SECRET = new_webhook_secret()


def profile(**changes: Any) -> SaveDoctorProfile:
    base = SaveDoctorProfile(
        doctor_id="dr-1",
        actor_id="dr-1",
        actor_is_admin=False,
        name="Dr One",
        credentials="MD",
        specialties=("Dermatology",),
        location=PlaceQuery(lat=34.05, lon=-118.24),
        radius_km=50,
    )
    return replace(base, **changes)


def directory() -> tuple[DirectoryService, FakeProfileStore, list[str]]:
    store = FakeProfileStore()
    nudged: list[str] = []

    async def on_saved(doctor_id: str, now: datetime) -> None:
        nudged.append(doctor_id)

    return DirectoryService(store, on_saved=on_saved), store, nudged


def test_a_saved_profile_is_versioned_announced_and_held_alerts_replanned() -> None:
    service, store, nudged = directory()
    view = asyncio.run(service.save_profile(profile(email="one@example.org")))
    assert view["specialties"] == ["dermatology"]
    assert view["profile_version"] == 1 and view["email"] == "one@example.org"
    assert [e.profile_version for e in store.events] == [1]
    assert store.prefs["dr-1"]["channels"] == ["email"]
    assert nudged == ["dr-1"]
    again = asyncio.run(service.save_profile(profile(name="Dr One Again")))
    assert again["profile_version"] == 2


def test_only_the_doctor_or_an_admin_edits_a_profile() -> None:
    service, store, _ = directory()
    with pytest.raises(NotYourProfile):
        asyncio.run(service.save_profile(profile(actor_id="dr-2")))
    assert store.events == []
    view = asyncio.run(service.save_profile(profile(actor_id="root", actor_is_admin=True)))
    assert view["id"] == "dr-1"


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"specialties": ("astrology",)}, UnknownSpecialties),
        ({"quiet_hours": QuietWindow("25:00", "07:00", "UTC")}, InvalidQuietHours),
        ({"quiet_hours": QuietWindow("22:00", "07:00", "Mars/Olympus")}, InvalidQuietHours),
        ({"webhook_url": "ftp://example.org/hook", "webhook_secret": SECRET}, InvalidWebhookUrl),
        (
            {"webhook_url": "https://example.org/hook", "webhook_secret": "s" * 40},
            InvalidWebhookSecret,
        ),
    ],
)
def test_invalid_profiles_are_refused_with_their_own_error(
    changes: dict[str, Any], error: type[Exception]
) -> None:
    service, store, _ = directory()
    with pytest.raises(error):
        asyncio.run(service.save_profile(profile(**changes)))
    assert store.events == []


def test_a_profile_sent_back_without_its_secret_keeps_the_stored_one() -> None:
    service, store, _ = directory()
    hook = {"webhook_url": "https://example.org/hook"}
    asyncio.run(service.save_profile(profile(**hook, webhook_secret=SECRET)))
    view = asyncio.run(service.save_profile(profile(**hook, keep_webhook_secret=True)))
    assert view["has_webhook_secret"] is True
    assert store.profiles["dr-1"][0]["webhook_secret"] == SECRET
    assert "webhook_secret" not in view  # shown only in the reply that set it
    # Sent explicitly as null, the server makes a new one: shown once, the old one
    # still signing during the rotation window.
    fresh = asyncio.run(service.save_profile(profile(**hook, webhook_secret=None)))
    assert fresh["webhook_secret"].startswith("whsec_") and fresh["webhook_secret"] != SECRET
    stored = store.profiles["dr-1"][0]
    assert stored["webhook_secret"] == fresh["webhook_secret"]
    assert stored["webhook_secret_previous"] == SECRET
    assert stored["webhook_secret_previous_until"] > datetime.now(UTC).timestamp() + 3600


def test_a_webhook_without_a_secret_gets_one_made_by_the_server_shown_once() -> None:
    service, store, _ = directory()
    hook = {"webhook_url": "https://example.org/hook"}
    view = asyncio.run(service.save_profile(profile(**hook, keep_webhook_secret=True)))
    assert view["webhook_secret"].startswith("whsec_")
    assert store.profiles["dr-1"][0]["webhook_secret"] == view["webhook_secret"]
    shown = asyncio.run(service.profile("dr-1", "dr-1", False))
    assert "webhook_secret" not in shown and shown["has_webhook_secret"] is True


def test_webhooks_need_the_sealing_key_and_https_unless_private_targets_are_on() -> None:
    hook = {"webhook_url": "https://example.org/hook", "webhook_secret": SECRET}
    service = DirectoryService(FakeProfileStore(), webhooks=WebhookPolicy(sealing=False))
    with pytest.raises(WebhooksUnavailable):
        asyncio.run(service.save_profile(profile(**hook)))
    strict = DirectoryService(FakeProfileStore(), webhooks=WebhookPolicy(allow_http=False))
    with pytest.raises(InvalidWebhookUrl):
        asyncio.run(strict.save_profile(profile(**{**hook, "webhook_url": "http://e.org/h"})))
    assert asyncio.run(strict.save_profile(profile(**hook)))["has_webhook_secret"] is True


def test_a_channel_switched_off_stays_off_until_the_doctor_changes_it() -> None:
    service, store, _ = directory()
    hook = {"webhook_url": "https://example.org/hook", "webhook_secret": SECRET}
    asyncio.run(service.save_profile(profile(**hook, email="dr@example.org")))
    assert store.prefs["dr-1"]["channels"] == ["webhook", "email"]
    assert asyncio.run(service.switch_off("dr-1", "webhook")) is True
    assert asyncio.run(service.switch_off("dr-1", "webhook")) is False
    assert asyncio.run(service.switch_off("dr-1", "email")) is True
    assert store.prefs["dr-1"]["channels"] == []
    assert store.events[-1].profile_version == 3
    # The same profile sent again keeps both off; a new secret or explicit e-mail
    # alerts turn them on again.
    asyncio.run(service.save_profile(profile(**hook, email="dr@example.org")))
    assert store.prefs["dr-1"]["channels"] == []
    renewed = {**hook, "webhook_secret": new_webhook_secret()}
    asyncio.run(service.save_profile(profile(**renewed, email="dr@example.org", email_alerts=True)))
    assert store.prefs["dr-1"]["channels"] == ["webhook", "email"]
    assert asyncio.run(service.switch_off("nobody", "email")) is False


def test_only_admins_set_rating_and_reviews() -> None:
    service, store, _ = directory()
    with pytest.raises(RatingSetByAdmins) as caught:
        asyncio.run(service.save_profile(profile(rating=5.0, review_count=10_000_000)))
    assert caught.value.code == "rating_set_by_admins" and store.events == []
    admin = {"actor_id": "root", "actor_is_admin": True}
    asyncio.run(service.save_profile(profile(**admin, rating=4.5, review_count=12)))
    # The doctor's own save leaves them out (kept), or sends them unchanged.
    kept = asyncio.run(service.save_profile(profile(keep=frozenset({"rating", "review_count"}))))
    assert (kept["rating"], kept["review_count"]) == (4.5, 12)
    same = asyncio.run(service.save_profile(profile(rating=4.5, review_count=12)))
    assert same["profile_version"] == 3
    with pytest.raises(RatingSetByAdmins):
        asyncio.run(service.save_profile(profile(rating=4.5, review_count=13)))
    with pytest.raises(RatingSetByAdmins):
        asyncio.run(service.patch_profile(PatchDoctorProfile("dr-1", "dr-1", False, {"rating": 5})))
    assert [e.rating for e in store.events] == [4.5, 4.5, 4.5]


def test_a_patch_changes_only_what_it_names() -> None:
    service, _, _ = directory()
    quiet = QuietWindow("22:00", "07:00", "America/Los_Angeles")
    hook = {"webhook_url": "https://example.org/hook", "webhook_secret": SECRET}
    asyncio.run(
        service.save_profile(
            profile(email="one@example.org", quiet_hours=quiet, daily_cap=7, **hook)
        )
    )
    # What an import sends: the card's fields, as an admin.
    changes = {"name": "Dr One, MD", "rating": 4.9, "review_count": 88}
    view = asyncio.run(service.patch_profile(PatchDoctorProfile("dr-1", "root", True, changes)))
    assert (view["name"], view["rating"], view["review_count"]) == ("Dr One, MD", 4.9, 88)
    assert view["email"] == "one@example.org" and view["daily_cap"] == 7
    assert view["quiet_hours"] == {"start": "22:00", "end": "07:00", "tz": "America/Los_Angeles"}
    assert view["webhook_url"] == hook["webhook_url"] and view["has_webhook_secret"]
    mine = asyncio.run(
        service.patch_profile(PatchDoctorProfile("dr-1", "dr-1", False, {"daily_cap": None}))
    )
    assert mine["daily_cap"] is None and mine["rating"] == 4.9
    with pytest.raises(NotYourProfile):
        asyncio.run(service.patch_profile(PatchDoctorProfile("dr-1", "dr-2", False, {})))


def test_a_patch_creates_a_profile_only_with_the_required_fields() -> None:
    service, _, _ = directory()
    with pytest.raises(ProfileIncomplete):
        asyncio.run(service.patch_profile(PatchDoctorProfile("dr-9", "root", True, {"name": "X"})))
    full = {
        "name": "Dr Nine",
        "specialties": ("dermatology",),
        "location": PlaceQuery(zip="90012"),
    }
    view = asyncio.run(service.patch_profile(PatchDoctorProfile("dr-9", "root", True, full)))
    assert view["city"] == "Los Angeles" and view["radius_km"] == 50


def test_a_save_retries_on_a_concurrent_write_and_gives_up_after_a_few() -> None:
    service, store, _ = directory()
    store.interleaved_writes = 2
    view = asyncio.run(service.save_profile(profile()))
    assert view["profile_version"] == 3
    store.interleaved_writes = 100
    with pytest.raises(ProfileChangedConcurrently):
        asyncio.run(service.save_profile(profile()))


def test_a_card_shows_private_fields_only_to_its_owner_or_an_admin() -> None:
    service, _, _ = directory()
    asyncio.run(service.save_profile(profile(email="one@example.org")))
    public = asyncio.run(service.profile("dr-1", None, False))
    other = asyncio.run(service.profile("dr-1", "dr-2", False))
    own = asyncio.run(service.profile("dr-1", "dr-1", False))
    admin = asyncio.run(service.profile("dr-1", "root", True))
    assert "email" not in public and "email" not in other
    assert own["email"] == admin["email"] == "one@example.org"
    with pytest.raises(DoctorNotFound):
        asyncio.run(service.profile("nobody", None, False))


def filled_inbox(n: int) -> tuple[InboxService, FakeInbox, list[str]]:
    store = FakeInbox()
    now = datetime.now(UTC)
    ids = []
    for i in range(n):
        nid = new_notification_id(int(now.timestamp() * 1000) + i)
        store.put("dr-1", new_item(nid, "question-match", now, reason_text=f"alert {i}"))
        ids.append(nid)
    return InboxService(store, SETTINGS), store, ids


def test_an_inbox_pages_newest_first_with_a_cursor() -> None:
    service, _, ids = filled_inbox(3)
    first = asyncio.run(service.page(ListInbox("dr-1", limit=2)))
    assert [i["id"] for i in first["items"]] == [ids[2], ids[1]]
    assert first["next_cursor"] == ids[1] and first["unread_count"] == 3
    rest = asyncio.run(service.page(ListInbox("dr-1", limit=2, cursor=first["next_cursor"])))
    assert [i["id"] for i in rest["items"]] == [ids[0]] and rest["next_cursor"] is None
    with pytest.raises(BadCursor):
        asyncio.run(service.page(ListInbox("dr-1", limit=2, cursor="not-an-id")))


def test_only_the_recipient_marks_a_notification_read() -> None:
    service, _, ids = filled_inbox(2)
    with pytest.raises(NotificationNotFound):
        asyncio.run(service.mark_read(MarkRead("dr-2", ids[0])))
    with pytest.raises(NotificationNotFound):
        asyncio.run(service.mark_read(MarkRead("dr-1", "n" + "0" * 24)))
    item = asyncio.run(service.mark_read(MarkRead("dr-1", ids[0])))
    assert item["read"] is True
    unread = asyncio.run(service.page(ListInbox("dr-1", limit=10, unread_only=True)))
    assert [i["id"] for i in unread["items"]] == [ids[1]]


def test_a_notification_names_only_the_channels_that_can_deliver() -> None:
    service, _, _ = filled_inbox(0)
    item = new_item(new_notification_id(0), "new-answer", datetime.now(UTC))
    # No SMTP relay configured: e-mail is left out, the webhook stays.
    note = service.notification("p1", item, {"channels": ["webhook", "email", "sms"]})
    assert note.external == ("webhook",)
    assert note.event.channels == ["inbox", "stream", "webhook"]
    assert note.event.recipient_id == "p1" and note.id == item["id"]


def test_delivered_inboxes_are_trimmed_to_their_bound_read_items_first() -> None:
    service, store, ids = filled_inbox(5)
    asyncio.run(service.mark_read(MarkRead("dr-1", ids[3])))
    for nid in ids:
        service.delivered(service.notification("dr-1", {"id": nid, "kind": "digest"}, {}))
    assert asyncio.run(service.trim_inboxes()) == 2
    assert sorted(store.ids["dr-1"]) == [ids[1], ids[2], ids[4]]
    assert asyncio.run(service.trim_inboxes()) == 0  # nothing written since


def test_only_admins_list_the_doctors_waiting_and_a_verified_one_leaves_the_list() -> None:
    service, _, _ = directory()
    asyncio.run(service.save_profile(profile(npi=made_up_npi("dr-1"))))
    with pytest.raises(StatusAdminOnly):
        asyncio.run(service.pending_doctors(False, 10))
    waiting = asyncio.run(service.pending_doctors(True, 10))
    assert [d["id"] for d in waiting["items"]] == ["dr-1"] and waiting["total"] == 1
    assert "email" not in waiting["items"][0]
    asyncio.run(service.set_status(SetDoctorStatus("dr-1", "verified", actor_is_admin=True)))
    assert asyncio.run(service.pending_doctors(True, 10)) == {"items": [], "total": 0}
