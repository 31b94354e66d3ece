"""Detached event streams (shared/sse.py), driven over raw ASGI: the request stack answers
the status and headers and is gone before the body flows; a client that goes away ends
the body at once (its `finally` runs); a server stopping still cancels it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI

from shared.sse import DetachedStreams, EventStream, Message, Scope


class Client:
    """The server's side of one connection: what the app sent, and a way to hang up."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.requested = False
        self.hung_up = asyncio.Event()

    async def receive(self) -> Message:
        if not self.requested:
            self.requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.hung_up.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def chunks(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]


def scope() -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/events",
        "raw_path": b"/events",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }


def build(log: list[str], ticks: int | None = None) -> FastAPI:
    """An app whose stream says `hello`, then ticks (forever unless `ticks`)."""
    app = FastAPI()

    class Stack:
        """A pure ASGI middleware that adds a header and notes when it returns."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
            async def with_header(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message["headers"], (b"x-stack", b"yes")]
                await send(message)

            try:
                await self.inner(scope, receive, with_header)
            finally:
                log.append("stack done")

    app.add_middleware(Stack)

    async def body() -> AsyncIterator[str]:
        try:
            yield "hello\n\n"
            sent = 0
            while ticks is None or sent < ticks:
                await asyncio.sleep(0.01)
                log.append("tick")
                sent += 1
                yield ": tick\n\n"
        finally:
            log.append("body closed")

    @app.get("/events")
    async def events() -> EventStream:
        return EventStream(body(), headers={"Cache-Control": "no-cache"})

    return app


async def test_the_stack_answers_the_headers_and_has_returned_before_the_body_flows() -> None:
    log: list[str] = []
    client = Client()
    asgi_scope = scope()
    await DetachedStreams(build(log, ticks=2))(asgi_scope, client.receive, client.send)
    start = client.sent[0]
    assert start["type"] == "http.response.start" and start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"cache-control"] == b"no-cache" and headers[b"x-stack"] == b"yes"
    assert client.chunks() == [b"hello\n\n", b": tick\n\n", b": tick\n\n", b""]
    assert log == ["stack done", "tick", "tick", "body closed"]
    assert client.sent[-1]["more_body"] is False
    # The server's scope (which it keeps) is not where the routing left its values.
    assert asgi_scope == scope()


async def test_a_client_that_goes_away_ends_the_body_at_once() -> None:
    log: list[str] = []
    client = Client()
    served = asyncio.create_task(DetachedStreams(build(log))(scope(), client.receive, client.send))
    while log.count("tick") < 2:
        await asyncio.sleep(0.01)
    client.hung_up.set()
    await asyncio.wait_for(served, 1)  # returns quietly: no error for the server to log
    assert log[-1] == "body closed"
    assert client.sent[-1]["more_body"] is True  # nothing more was sent to nobody


async def test_a_server_stopping_cancels_the_stream_and_is_not_swallowed() -> None:
    log: list[str] = []
    client = Client()
    served = asyncio.create_task(DetachedStreams(build(log))(scope(), client.receive, client.send))
    while "tick" not in log:
        await asyncio.sleep(0.01)
    served.cancel()
    with pytest.raises(asyncio.CancelledError):
        await served
    assert log[-1] == "body closed"


async def test_without_the_detaching_layer_the_stream_is_sent_in_place() -> None:
    log: list[str] = []
    client = Client()
    await build(log, ticks=1)(scope(), client.receive, client.send)
    assert client.chunks() == [b"hello\n\n", b": tick\n\n", b""]
    assert log == ["tick", "body closed", "stack done"]


async def test_other_requests_go_through_untouched() -> None:
    client = Client()
    missing = {**scope(), "path": "/nothing", "raw_path": b"/nothing"}
    await DetachedStreams(build([]))(missing, client.receive, client.send)
    assert client.sent[0]["status"] == 404


def test_the_notify_openapi_document_describes_the_live_stream() -> None:
    # FastAPI reads a route's default status from its response class's __init__: an
    # EventStream without one made notify's /openapi.json a 500.
    from services.notify.app import create_app
    from services.notify.settings import NotifySettings
    from tests.support import JWT_SECRET

    app = create_app(NotifySettings(redis_url="redis://127.0.0.1:1/0", jwt_secret=JWT_SECRET))
    stream = app.openapi()["paths"]["/inbox/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
