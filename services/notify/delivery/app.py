"""Wiring of the delivery part on its own: the outbox worker plus health and metrics.

`python -m services.notify.delivery` runs it from the same image and settings as
notify, so delivery scales apart; the notify replicas then run with
`ASKDOC_DELIVERY_IN_PROCESS=false`. Replicas share the outbox's consumer group.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from shared.http import create_http_app
from shared.service import ServiceRuntime

from .. import SERVICE
from ..background import Background
from ..parts import build_delivery
from ..settings import NotifySettings

DEFAULT_PORT = 8005


def create_delivery_app(settings: NotifySettings) -> FastAPI:
    """The delivery worker alone, with /healthz, /readyz and /metrics."""
    runtime = ServiceRuntime(SERVICE, settings)
    worker = build_delivery(
        runtime.redis, runtime.committer, runtime.tag, settings, runtime.consumer.outage
    )
    background = Background(runtime, {"delivery": worker.run})
    app = create_http_app(
        runtime, [], "notify's delivery worker: webhooks and e-mail from the outbox."
    )
    runtime_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[None]:
        async with runtime_lifespan(app_):
            await background.start()
            try:
                yield
            finally:
                await worker.stop(settings.shutdown_grace_s / 2)
                await background.stop()

    app.router.lifespan_context = lifespan
    return app
