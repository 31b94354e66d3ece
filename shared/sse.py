"""Server-sent event streams that outlive the request stack that opened them.

A stream is opened like any request: through the middlewares, the route's dependencies
(auth, validation) and its error handlers, which answer its status and headers. Then the
stack unwinds, and the body is pumped by `DetachedStreams`, the app's outermost layer,
with the client's own `send`: while a stream lasts, it holds one coroutine of the
server's, its body, and one task watching for the client to go away; not the dozen
middleware and routing frames, requests, exit stacks and the response's task group of a
`StreamingResponse` (about 20 KiB of a stream's 35 on a replica holding ten thousand).

The middlewares between must pass the response's messages on to the client as they come
(pure ASGI ones, as shared/http.py's); one that buffers the response and sends it itself
(Starlette's BaseHTTPMiddleware) would send an empty body.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from starlette.responses import Response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The scope key through which an EventStream hands its body to DetachedStreams.
DETACH = "askdoc.detach"


class EventStream(Response):
    """A `text/event-stream` response: its status and headers are sent by the request
    stack, its body (str chunks) by DetachedStreams once the stack has unwound, or in
    place in an app without it."""

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterator[str],
        headers: Mapping[str, str] | None = None,
        status_code: int = 200,  # FastAPI's OpenAPI reads the route's status from here
    ) -> None:
        self.status_code = status_code
        self.background = None
        self.body_iterator = content
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        detach: Callable[[AsyncIterator[str]], None] | None = scope.get(DETACH)
        if detach is not None:
            detach(self.body_iterator)
        else:
            await pump(self.body_iterator, receive, send)


class DetachedStreams:
    """The outermost layer of an app: pumps the bodies EventStream responses hand over,
    after the rest of the app has returned."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await self._respond(scope, receive, send)
        if body is not None:
            await pump(body, receive, send)

    async def _respond(
        self, scope: Scope, receive: Receive, send: Send
    ) -> AsyncIterator[str] | None:
        """Run the app; the body it left to pump, if any. The app gets a copy of the
        scope, gone once it returns: the server keeps its own as long as the connection,
        and need not keep what the routing put in it (exit stacks, the route's values)."""
        bodies: list[AsyncIterator[str]] = []
        await self.app({**scope, DETACH: bodies.append}, receive, send)
        return bodies[0] if bodies else None


async def pump(body: AsyncIterator[str], receive: Receive, send: Send) -> None:
    """Send `body`'s chunks until it ends, or until the client goes away: then the body
    is cancelled where it waits (its `finally` runs) and this returns quietly."""
    task = asyncio.current_task()
    assert task is not None
    watcher = asyncio.ensure_future(_until_disconnect(receive, task))
    try:
        async for chunk in body:
            await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        # The watcher's cancel, once the client is gone, ends the stream; any other
        # (the server stopping) goes on up.
        if not watcher.done() or watcher.cancelled() or task.uncancel() > 0:
            raise
    finally:
        watcher.cancel()
        # Cancelled in a send, the body waits at a `yield`: close it now, not at GC.
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()


async def _until_disconnect(receive: Receive, task: asyncio.Task[Any]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    task.cancel()
