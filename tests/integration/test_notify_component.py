"""notify in process: `create_app` served through httpx's ASGI transport, on real Redis.

Routes, commands, the domain exceptions' status table and the stores meet here without
a server process, so a failure points at the code, not at process start-up. The
lifespan (consumers, background loops) is left out: the process tests cover it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.notify.app import create_app
from services.notify.settings import NotifySettings
from tests.support import JWT_SECRET, WEBHOOK_SECRET_KEY, auth

PROFILE = {
    "name": "Dr Component",
    "credentials": "MD",
    "specialties": ["dermatology"],
    "location": {"lat": 34.05, "lon": -118.24},
    "radius_km": 40,
    "email": "component@example.org",
}


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app's routes and use cases on real Redis; its consumers and loops stay off."""
    settings = NotifySettings(  # type: ignore[call-arg]
        redis_url=redis_url, jwt_secret=JWT_SECRET, webhook_secret_key=WEBHOOK_SECRET_KEY
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://notify") as c:
            yield c
    finally:
        await app.state.runtime.redis.aclose()
        await app.state.hub.redis.aclose()


async def test_a_profile_is_saved_and_its_card_hides_contact_data(
    client: httpx.AsyncClient,
) -> None:
    saved = await client.put("/doctors/dr-c", json=PROFILE, headers=auth("dr-c", "doctor"))
    assert saved.status_code == 200, saved.text
    assert saved.json()["email"] == "component@example.org"
    public = await client.get("/doctors/dr-c")
    assert public.status_code == 200
    assert public.json()["specialty"] == "dermatology" and "email" not in public.json()
    own = await client.get("/doctors/dr-c", headers=auth("dr-c", "doctor"))
    assert own.json()["email"] == "component@example.org"


async def test_domain_exceptions_come_back_as_their_statuses(client: httpx.AsyncClient) -> None:
    someone_else = await client.put(
        "/doctors/dr-c", json=PROFILE, headers=auth("dr-other", "doctor")
    )
    assert someone_else.status_code == 403
    assert someone_else.json()["error"]["code"] == "forbidden"
    unknown = await client.put(
        "/doctors/dr-c",
        json={**PROFILE, "specialties": ["astrology"]},
        headers=auth("dr-c", "doctor"),
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_specialties"
    missing = await client.get("/doctors/nobody")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    cursor = await client.get("/inbox?cursor=bogus", headers=auth("dr-c", "doctor"))
    assert cursor.status_code == 400 and cursor.json()["error"]["code"] == "bad_cursor"
    read = await client.post(f"/inbox/n{'0' * 24}/read", headers=auth("dr-c", "doctor"))
    assert read.status_code == 404 and read.json()["error"]["code"] == "not_found"


async def test_a_webhook_secret_left_out_of_a_put_is_kept(client: httpx.AsyncClient) -> None:
    hooked = {**PROFILE, "webhook_url": "https://hooks.example.org/askdoc"}
    headers = auth("dr-hook", "doctor")
    given = "whsec_" + "a" * 44
    first = await client.put(
        "/doctors/dr-hook", json={**hooked, "webhook_secret": given}, headers=headers
    )
    assert first.status_code == 200, first.text
    assert first.json()["webhook_secret"] == given  # the reply that set it, only
    again = await client.put("/doctors/dr-hook", json=hooked, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["has_webhook_secret"] is True and "webhook_secret" not in again.json()
    assert again.json()["profile_version"] == 2
    renewed = await client.put(
        "/doctors/dr-hook", json={**hooked, "webhook_secret": None}, headers=headers
    )
    assert renewed.status_code == 200, renewed.text
    made = renewed.json()["webhook_secret"]
    assert made.startswith("whsec_") and made != given
    for reader in (headers, auth("root", "admin"), {}):
        shown = await client.get("/doctors/dr-hook", headers=reader)
        assert "webhook_secret" not in shown.json() and made not in shown.text
    for bad in ("whsec-" + "a" * 44, "a" * 50, "whsec_" + "!" * 44):
        refused = await client.put(
            "/doctors/dr-hook", json={**hooked, "webhook_secret": bad}, headers=headers
        )
        assert refused.status_code == 422, bad


async def test_an_empty_inbox_reads_as_empty(client: httpx.AsyncClient) -> None:
    inbox = await client.get("/inbox", headers=auth("p-new", "patient"))
    assert inbox.status_code == 200
    assert inbox.json() == {"items": [], "next_cursor": None, "unread_count": 0}
