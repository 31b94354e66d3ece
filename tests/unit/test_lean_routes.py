"""A lean route answers exactly as the same endpoint on a plain FastAPI route."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from shared.errors import ApiError
from shared.http import install_error_handlers, json_body, lean_route
from shared.ids import ResourceId, is_resource_id


class VoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Literal[1, 0, -1]


def build() -> tuple[FastAPI, list[str]]:
    """One endpoint served twice: /lean/{id} on a lean route, /plain/{id} on FastAPI's."""
    fast_calls: list[str] = []
    router = APIRouter()

    async def endpoint(
        item_id: ResourceId,
        payload: VoteIn,
        request: Request,
        x_who: Annotated[str | None, Header(max_length=8)] = None,
    ) -> JSONResponse:
        if x_who == "nobody":
            raise ApiError(401, "unauthenticated", "sign in")
        return JSONResponse({"id": item_id, "value": payload.value, "who": x_who})

    async def fast_args(request: Request) -> dict[str, Any] | None:
        item_id = request.path_params["item_id"]
        who = request.headers.get("x-who")
        if not is_resource_id(item_id) or (who is not None and len(who) > 8):
            return None
        payload = await json_body(request, VoteIn)
        if payload is None:
            return None
        fast_calls.append(item_id)
        return {"item_id": item_id, "payload": payload, "request": request, "x_who": who}

    lean_route(router, "PUT", "/lean/{item_id}", fast_args, summary="An item")(endpoint)
    router.add_api_route("/plain/{item_id}", endpoint, methods=["PUT"], summary="An item")
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    return app, fast_calls


REQUESTS: list[dict[str, Any]] = [
    {"path": "ok-1", "json": {"value": 1}},
    {"path": "ok-1", "json": {"value": -1}, "headers": {"X-Who": "ann"}},
    {"path": "bad:id", "json": {"value": 1}},
    {"path": "ok-1", "json": {"value": 1}, "headers": {"X-Who": "far-too-long"}},
    {"path": "ok-1", "json": {"value": 2}},
    {"path": "ok-1", "json": {"value": 1, "more": 1}},
    {"path": "ok-1", "content": b'{"value": 1', "headers": {"Content-Type": "application/json"}},
    {"path": "ok-1", "content": b'{"value": 1}', "headers": {"Content-Type": "text/plain"}},
    {"path": "ok-1", "content": b'{"value": 1}'},
    {"path": "ok-1", "content": b""},
    {"path": "ok-1", "json": {"value": 1}, "headers": {"X-Who": "nobody"}},
    {"path": "ok-1", "json": [1]},
]


async def test_every_request_gets_the_plain_routes_answer() -> None:
    app, fast_calls = build()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for spec in REQUESTS:
            kwargs = {k: v for k, v in spec.items() if k != "path"}
            lean = await client.put(f"/lean/{spec['path']}", **kwargs)
            plain = await client.put(f"/plain/{spec['path']}", **kwargs)
            assert (lean.status_code, lean.json()) == (plain.status_code, plain.json()), spec
    # Only the well-formed requests took the lean path; the rest went to FastAPI.
    assert fast_calls == ["ok-1", "ok-1", "ok-1"]


async def test_the_lean_route_documents_the_same_operation() -> None:
    app, _ = build()
    paths = app.openapi()["paths"]
    lean, plain = paths["/lean/{item_id}"]["put"], paths["/plain/{item_id}"]["put"]
    for operation in (lean, plain):
        operation.pop("operationId")
    assert lean == plain
    assert [p["name"] for p in lean["parameters"]] == ["item_id", "x-who"]
