"""One service in this process: `create_app(settings)` on a real redis-server, over ASGI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from shared.events import Event
from shared.redis import RedisClient
from shared.settings import Settings
from tests.support import JWT_SECRET


@asynccontextmanager
async def in_process(
    create_app: Callable[[Settings], FastAPI], redis_url: str, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The service's app started (lifespan and consumers) and an HTTP client bound to it."""
    app = create_app(
        Settings(redis_url=redis_url, jwt_secret=JWT_SECRET, polling_interval_ms=20, **settings)
    )
    async with app.router.lifespan_context(app):
        deadline = time.monotonic() + 60
        while not await app.state.runtime.is_ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not become ready in 60 s")
            await asyncio.sleep(0.05)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client, app


async def publish_and_wait(redis: RedisClient, event: Event, group: str) -> None:
    """XADD an event as its producer would, and wait until `group` has handled it."""
    entry_id = await redis.xadd(event.stream, event.to_wire())  # type: ignore[arg-type]
    wanted = tuple(map(int, str(entry_id).split("-")))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        groups = {g["name"]: g for g in await redis.xinfo_groups(event.stream)}
        info = groups.get(group)
        if info is not None:
            delivered = tuple(map(int, info["last-delivered-id"].split("-")))
            pending = await redis.xpending_range(event.stream, group, entry_id, entry_id, 1)
            if delivered >= wanted and not pending:
                return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{group} did not handle {event.event_type}")
