"""The web's service clients over real HTTP (a small aiohttp server on loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from services.web.clients import ApiProblem, BackendUnavailable, Services
from tests.support import free_port

PAGE = {"id": "q1", "title": "Cheek", "body": "Lopsided", "answers": [], "answer_count": 0}


@pytest.fixture
async def backend() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in service: a page with an ETag, a 404, a 422 with fields, a 500."""
    seen: list[dict[str, Any]] = []

    async def page(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.json_response(PAGE, headers={"ETag": '"v1"'})

    async def missing(request: web.Request) -> web.Response:
        error = {"code": "not_found", "message": "no such question"}
        return web.json_response({"error": error}, status=404)

    async def ask(request: web.Request) -> web.Response:
        seen.append({"body": await request.json(), **request.headers})
        details = [{"field": "title.0", "message": "too short"}]
        error = {"code": "invalid_request", "message": "title: too short", "details": details}
        return web.json_response({"error": error}, status=422)

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="<html>oops</html>")

    app = web.Application()
    app.router.add_get("/questions/q1", page)
    app.router.add_get("/questions/q2", missing)
    app.router.add_post("/questions", ask)
    app.router.add_get("/taxonomy", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def _services(url: str) -> Services:
    return Services(url, url, url, url, timeout_s=5)


async def test_a_page_seen_before_is_asked_for_by_its_etag_and_reused(
    backend: tuple[str, list[dict[str, Any]]],
) -> None:
    url, seen = backend
    services = _services(url)
    try:
        etag, first = await services.questions.page_with_etag("q1")
        assert etag == '"v1"' and first.title == "Cheek"
        again = await services.questions.page_with_etag("q1")
        assert again == (etag, first) and again[1] is first
        assert "If-None-Match" not in seen[0] and seen[1]["If-None-Match"] == '"v1"'
        assert all(h.get("X-Request-ID") for h in seen)
    finally:
        await services.aclose()


async def test_errors_come_back_as_problems_with_their_fields(
    backend: tuple[str, list[dict[str, Any]]],
) -> None:
    url, seen = backend
    services = _services(url)
    try:
        with pytest.raises(ApiProblem) as missing:
            await services.questions.page("q2")
        assert (missing.value.status, missing.value.code) == (404, "not_found")
        with pytest.raises(ApiProblem) as invalid:
            await services.questions.ask("tok", {"title": "x"}, "key-1")
        assert invalid.value.status == 422 and invalid.value.fields == {"title": "too short"}
        sent = seen[-1]
        assert sent["body"] == {"title": "x"} and sent["Idempotency-Key"] == "key-1"
        assert sent["Authorization"] == "Bearer tok"
        with pytest.raises(BackendUnavailable) as broken:
            await services.questions.taxonomy()
        assert broken.value.status == 500 and "answered 500" in broken.value.message
    finally:
        await services.aclose()


async def test_a_service_that_cannot_be_reached_is_unavailable() -> None:
    services = _services(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(BackendUnavailable) as down:
            await services.questions.page("q1")
        assert down.value.status == 503 and "cannot be reached" in down.value.message
    finally:
        await services.aclose()
