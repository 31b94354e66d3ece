"""The service app factory: routes added to the app itself, the stream layer only if asked."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from shared.http import (
    DetachingFastAPI,
    JSONBytes,
    add_routes,
    create_http_app,
    install_error_handlers,
    lean_route,
)
from shared.service import ServiceRuntime
from shared.settings import Settings
from shared.sse import DetachedStreams
from tests.support import JWT_SECRET


def who() -> str:
    return "someone"


async def _fast_args(request: Request) -> dict[str, Any] | None:
    return {"item_id": request.path_params["item_id"], "request": request}


def build_router() -> APIRouter:
    """A router with router-wide tags, dependencies and responses, as services have."""
    router = APIRouter(tags=["items"], responses={404: {"description": "No such item"}})

    @router.get("/items/{item_id}", summary="An item", response_model_exclude_none=True)
    async def get_item(item_id: int, caller: Annotated[str, Depends(who)]) -> dict[str, Any]:
        """The item, and who asked."""
        return {"id": item_id, "caller": caller, "none": None}

    @router.put("/items/{item_id}", status_code=202, response_class=PlainTextResponse)
    async def put_item(item_id: int) -> str:
        return f"put {item_id}"

    @router.delete("/items/{item_id}", include_in_schema=False, deprecated=True)
    async def delete_item(item_id: int) -> None:
        return None

    @lean_route(router, "POST", "/items/{item_id}", _fast_args, status_code=201)
    async def post_item(item_id: str, request: Request) -> Response:
        return Response(f'{{"posted": "{item_id}"}}', 201, media_type="application/json")

    return router


def apps() -> tuple[FastAPI, FastAPI]:
    """The same router included by FastAPI and added by add_routes."""
    included, added = FastAPI(), FastAPI()
    for app in (included, added):
        install_error_handlers(app)
    router = build_router()
    included.include_router(router)
    add_routes(added, router)
    return included, added


def test_added_routes_document_what_the_included_router_does() -> None:
    included, added = apps()
    assert added.openapi() == included.openapi()
    assert "delete" not in added.openapi()["paths"]["/items/{item_id}"]


async def test_added_routes_answer_as_the_included_router_does() -> None:
    included, added = apps()
    answers = []
    for app in (included, added):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            got = []
            for method, path in [
                ("GET", "/items/7"),
                ("GET", "/items/x"),
                ("PUT", "/items/7"),
                ("DELETE", "/items/7"),
                ("POST", "/items/7"),
                ("PATCH", "/items/7"),
                ("GET", "/nothing"),
            ]:
                response = await client.request(method, path)
                got.append((response.status_code, response.headers["content-type"], response.text))
            answers.append(got)
    assert answers[0] == answers[1]
    assert answers[1][0] == (200, "application/json", '{"id":7,"caller":"someone","none":null}')
    assert answers[1][4][0] == 201


async def test_the_apps_dependency_overrides_reach_added_routes() -> None:
    _, added = apps()
    added.dependency_overrides[who] = lambda: "stand-in"
    transport = httpx.ASGITransport(app=added)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/items/1")
    assert response.json() == {"id": 1, "caller": "stand-in", "none": None}


def _runtime() -> ServiceRuntime:
    # Nothing connects until the app starts.
    return ServiceRuntime("questions", Settings(jwt_secret=JWT_SECRET))  # type: ignore[arg-type]


def test_only_a_streaming_service_gets_the_detaching_layer() -> None:
    plain = create_http_app(_runtime(), [build_router()], "plain")
    streaming = create_http_app(_runtime(), [build_router()], "streams", streams=True)
    assert type(plain) is FastAPI
    assert isinstance(streaming, DetachingFastAPI)
    assert isinstance(streaming.build_middleware_stack(), DetachedStreams)
    assert not isinstance(plain.build_middleware_stack(), DetachedStreams)


def test_json_bytes_answers_as_a_json_response_of_the_same_bytes() -> None:
    body = b'{"id":"q1","title":"\xc3\xa9"}'
    plain = Response(body, status_code=201, media_type="application/json")
    fast = JSONBytes(body, 201)
    assert (fast.status_code, fast.body, fast.raw_headers) == (
        plain.status_code,
        plain.body,
        plain.raw_headers,
    )
    assert fast.background is None
