"""The admins' list of doctors waiting for verification, on real Redis: doctors saved
before the list existed join it once, at notify's start; a profile verified since is not
listed even if the list still names it."""

from __future__ import annotations

from typing import Any

from services.notify.api import DoctorIn
from services.notify.directory.store import DIRECTORY_TAG
from services.notify.parts import build_parts
from services.notify.settings import NotifySettings
from shared.atomic import Committer
from shared.auth import Principal
from shared.redis import make_redis
from tests.support import JWT_SECRET, verified

PROFILE: dict[str, Any] = {
    "name": "Dr Wait",
    "credentials": "MD",
    "specialties": ["dermatology"],
    "location": {"city": "Los Angeles", "state": "CA"},
    "radius_km": 50,
}
ADMIN = Principal("admin", "admin", "Admin")


async def test_doctors_waiting_from_before_the_list_join_it_once(redis_url: str) -> None:
    settings = NotifySettings(redis_url=redis_url, jwt_secret=JWT_SECRET)  # type: ignore[call-arg]
    client = make_redis(settings)
    parts = build_parts(client, Committer(client), "{askdoc.notification-sent}", settings)
    directory, store = parts.directory, parts.stores.directory
    try:
        for doctor in ("dr-wait-1", "dr-wait-2"):
            me = Principal(doctor, "doctor", doctor)
            await directory.save_profile(DoctorIn(**PROFILE).command(doctor, me))
        await directory.save_profile(
            DoctorIn(**verified(PROFILE, "dr-done")).command("dr-done", ADMIN)
        )
        assert (await store.pending(10))[1] == 2
        # As a store from before the list would have it: profiles, no list.
        await client.delete(f"{DIRECTORY_TAG}:pending")
        assert await store.pending(10) == ([], 0)

        await directory.index_old_pending()
        listed, total = await store.pending(10)
        assert sorted(p["id"] for p in listed) == ["dr-wait-1", "dr-wait-2"]
        assert total == 2
        assert await store.index_old_pending() == 0  # once: the marker holds

        # Named by the list yet verified (the backfill met an admin's verify): left out.
        await client.zadd(f"{DIRECTORY_TAG}:pending", {"dr-done": 1})
        listed, _ = await store.pending(10)
        assert "dr-done" not in [p["id"] for p in listed]
    finally:
        await client.aclose()
