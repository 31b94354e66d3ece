"""Wiring of the notify service: `create_app(settings)` builds everything."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from shared import geo
from shared.atomic import Committer
from shared.http import create_http_app
from shared.redis import make_redis
from shared.service import ServiceRuntime

from . import SERVICE, api, handlers
from .background import Background
from .inbox.live import LiveHub, LiveStreams
from .inbox.slots import StreamSlots
from .parts import build_delivery, build_parts
from .settings import NotifySettings

DEFAULT_PORT = 8004


def end_streams_on_signal(hub: LiveHub) -> None:
    """Close open SSE streams as soon as SIGTERM/SIGINT arrives.

    uvicorn waits for open responses before it runs the lifespan shutdown, and an event
    stream never ends by itself: without this a connected client would hold a stopping
    replica for the whole grace period. Clients reconnect (to another replica) and
    resume from their Last-Event-ID. uvicorn's own handler still runs afterwards.
    """
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(hub.close)
            previous(signum, frame)

        with contextlib.suppress(ValueError):  # not the main thread (an in-process test)
            signal.signal(sig, handler)


def create_app(settings: NotifySettings) -> FastAPI:
    """The notify service: directory and inbox API, matching consumers, delivery workers."""
    runtime = ServiceRuntime(SERVICE, settings)
    parts = build_parts(runtime.redis, runtime.committer, runtime.tag, settings)
    runtime.trimmed_streams.append(parts.stores.outbox.stream)
    handlers.register(runtime.consumer, parts.alerts, parts.escalations, parts.inbox)
    runtime.warmups.append(geo.warm_up)
    # The delivery worker and the live reader block on reads and wait on receivers:
    # they get a connection pool of their own, so they never starve the event handlers.
    side = make_redis(settings)
    hub = LiveHub(
        side, parts.inbox.items, parts.inbox.withdrawn, parts.inbox.restored, parts.inbox.unread
    )
    live_streams = LiveStreams(
        hub,
        StreamSlots(runtime.redis, runtime.tag),
        parts.inbox.items_after,
        settings.sse_heartbeat_s,
        settings.sse_max_streams_per_user,
    )
    loops: dict[str, Callable[[], Awaitable[None]]] = {
        "held-releaser": parts.held.run_releaser,
        "escalator": parts.escalations.run_escalator,
        "inbox-trimmer": parts.inbox.run_trimmer,
        # Once: digests made before they were indexed under each question they list.
        "digest-indexer": parts.inbox.index_old_digests,
        # Once: doctors waiting for verification saved before the waiting list existed.
        "pending-indexer": parts.directory.index_old_pending,
        "live-hub": hub.run,
        "live-withdrawals": hub.run_withdrawals,
        "live-leases": live_streams.run_leases,
    }
    # With delivery_in_process off, `python -m services.notify.delivery` drains the outbox.
    worker = None
    if settings.delivery_in_process:
        worker = build_delivery(
            side, Committer(side), runtime.tag, settings, runtime.consumer.outage
        )
        loops["delivery"] = worker.run
    background = Background(runtime, loops)
    app = create_http_app(
        runtime,
        [api.router],
        "The doctor directory, matching questions to doctors, and alert inboxes "
        "(JSON, server-sent events, webhooks, e-mail).",
        statuses=api.STATUSES,
        streams=True,
    )
    app.state.parts = parts
    app.state.hub = hub
    app.state.live_streams = live_streams

    runtime_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[None]:
        # Runtime first (Redis, consumers); our loops stop before it closes Redis.
        async with runtime_lifespan(app_):
            end_streams_on_signal(hub)
            await background.start()
            try:
                yield
            finally:
                hub.close()
                if worker is not None:
                    await worker.stop(settings.shutdown_grace_s / 2)
                await background.stop()
                await side.aclose()

    app.router.lifespan_context = lifespan
    return app
