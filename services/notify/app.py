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
from shared.logging import get_logger
from shared.redis import make_redis
from shared.service import ServiceRuntime

from . import api, handlers
from .delivery import DeliveryWorker
from .live import LiveHub
from .service import SERVICE, NotifyService
from .settings import NotifySettings
from .store import DirectoryStore, InboxStore

DEFAULT_PORT = 8004

log = get_logger("askdoc.notify")


class Background:
    """The notifier's own loops, started once the runtime is ready, stopped before it."""

    def __init__(
        self, runtime: ServiceRuntime, loops: dict[str, Callable[[], Awaitable[None]]]
    ) -> None:
        self.runtime = runtime
        self.loops = loops
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the loops in the background as soon as Redis is reachable."""
        self.tasks.append(asyncio.create_task(self._when_ready(), name="notify-background"))

    async def _when_ready(self) -> None:
        # The shared runtime exposes readiness as a flag, not an event.
        while not self.runtime.ready:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for name, loop in self.loops.items():
            self.tasks.append(asyncio.create_task(self._guard(name, loop), name=name))

    @staticmethod
    async def _guard(name: str, loop: Callable[[], Awaitable[None]]) -> None:
        # A bug in one loop must not stop the others or the service; restart it.
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background_loop_crashed", loop=name)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        """Cancel the loops."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


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
    directory = DirectoryStore(runtime.redis, runtime.committer, settings.stream_maxlen)
    inbox = InboxStore(
        runtime.redis,
        runtime.committer,
        runtime.tag,
        settings.stream_maxlen,
        settings.inbox_ttl_days * 86400,
    )
    service = NotifyService(directory, inbox, settings)
    handlers.register(runtime.consumer, service)
    runtime.warmups.append(geo.warm_up)
    # The delivery worker and the live reader block on reads and wait on receivers:
    # they get a connection pool of their own, so they never starve the event handlers.
    side = make_redis(settings)
    side_committer = Committer(side)
    hub = LiveHub(side, service.items)
    worker = DeliveryWorker(
        side,
        InboxStore(side, side_committer, runtime.tag, settings.stream_maxlen, inbox.ttl_s),
        DirectoryStore(side, side_committer, settings.stream_maxlen),
        settings,
    )
    background = Background(
        runtime,
        {
            "held-releaser": service.run_releaser,
            "inbox-trimmer": service.run_trimmer,
            "delivery": worker.run,
            "live-hub": hub.run,
        },
    )
    app = create_http_app(
        runtime,
        [api.router],
        "The doctor directory, matching questions to doctors, and alert inboxes "
        "(JSON, server-sent events, webhooks, e-mail).",
    )
    app.state.service = service
    app.state.hub = hub

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
                await worker.stop(settings.shutdown_grace_s / 2)
                await background.stop()
                await side.aclose()

    app.router.lifespan_context = lifespan
    return app
