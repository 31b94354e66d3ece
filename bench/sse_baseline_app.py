"""The live-stream baseline: a bare Starlette SSE endpoint fed by one XREAD loop.

No auth, no caps, no replay, no heartbeat: one queue per connection, keyed by the
`user` query parameter, and one reader of `askdoc.notification-sent` that pushes each
entry to its recipient's queues. What askdoc adds on top is what the bench compares.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from shared import streams
from shared.events import WIRE_FIELD

queues: dict[str, asyncio.Queue[str]] = {}


async def read_forever(client: aioredis.Redis) -> None:
    last = None
    while True:
        try:
            if last is None:  # pinned by id: "$" on every call would miss entries between
                tail = await client.xrevrange(streams.NOTIFICATION_SENT, count=1)
                last = tail[0][0].decode() if tail else "0-0"
            reply = await client.xread({streams.NOTIFICATION_SENT: last}, count=200, block=2000)
        except (RedisError, OSError) as exc:
            print(f"baseline reader: {exc!r}", file=sys.stderr, flush=True)
            await asyncio.sleep(0.5)
            continue
        for _, entries in reply or []:
            last = entries[-1][0].decode()
            for _, fields in entries:
                raw = fields[WIRE_FIELD.encode()].decode()
                data = json.loads(raw)
                queue = queues.get(data["recipient_id"])
                if queue is not None:
                    queue.put_nowait(
                        f"id: {data['notification_id']}\nevent: notification\ndata: {raw}\n\n"
                    )


async def stream(request: Request) -> StreamingResponse:
    user = request.query_params["user"]
    queue: asyncio.Queue[str] = asyncio.Queue()
    queues[user] = queue

    async def body() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            while True:
                yield await queue.get()
        finally:
            queues.pop(user, None)

    return StreamingResponse(body(), media_type="text/event-stream")


@contextlib.asynccontextmanager
async def lifespan(_: Any) -> AsyncIterator[None]:
    client = aioredis.Redis.from_url(os.environ["ASKDOC_REDIS_URL"])
    reader = asyncio.create_task(read_forever(client))
    yield
    reader.cancel()
    await client.aclose()


app = Starlette(routes=[Route("/inbox/stream", stream)], lifespan=lifespan)
