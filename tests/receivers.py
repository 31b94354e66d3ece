"""Webhook receivers for tests, on loopback: a well-behaved one and the ones that misbehave.

`WebhookReceiver` is a real uvicorn server (in a thread) that records every delivery;
`verify` checks one with the `standardwebhooks` package exactly as a receiver does.
`python -m tests.receivers trickle|hold HOST PORT` runs a misbehaving receiver as its own
process: `trickle` answers 200 and then streams a body that never ends; `hold` accepts
connections and never answers.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks.webhooks import Webhook
from starlette.requests import Request
from starlette.responses import Response

from tests.support import free_port

#: How a path answers: (status, headers) for the n-th call (1-based) with one webhook-id.
Behaviour = Callable[[int], tuple[int, dict[str, str]]]


@dataclass
class Delivery:
    """One request as the receiver got it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int


@dataclass
class WebhookReceiver:
    """A real HTTP server on loopback recording every delivery; paths answer by behaviour."""

    host: str = "127.0.0.1"
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = free_port()
        self._calls: Counter[tuple[str, str]] = Counter()
        config = uvicorn.Config(
            self._app,
            host=self.host,
            port=self.port,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        body = await request.body()
        path = request.url.path
        key = (path, request.headers.get("webhook-id", ""))
        self._calls[key] += 1
        behave = self.behaviours.get(path, lambda _: (200, {}))
        status, headers = behave(self._calls[key])
        self.deliveries.append(
            Delivery(path, dict(request.headers), body, time.monotonic(), status)
        )
        await Response(status_code=status, headers=headers)(scope, receive, send)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("webhook receiver did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(5)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def to(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == path]


def verify(delivery: Delivery, secret: str) -> Any:
    """The payload, verified with the standardwebhooks package as a receiver does (raises
    WebhookVerificationError when the signature, id or timestamp is wrong)."""
    return Webhook(secret).verify(delivery.body, delivery.headers)


# --- misbehaving receivers, each run as its own process ------------------------------------


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """200 at once, then a chunked body that never ends (64 KiB every 10 ms)."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    try:
        while True:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.01)
    except (ConnectionError, OSError):
        writer.close()


async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, read nothing, answer nothing, never close."""
    await asyncio.Event().wait()


async def _serve(mode: str, host: str, port: int) -> None:
    handler = {"trickle": _trickle, "hold": _hold}[mode]
    server = await asyncio.start_server(handler, host, port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], sys.argv[2], int(sys.argv[3])))
