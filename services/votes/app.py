"""Wiring of the votes service: `create_app(settings)` builds everything."""

from __future__ import annotations

from fastapi import FastAPI

from shared.http import create_http_app
from shared.ratelimit import WriteLimit
from shared.service import ServiceRuntime
from shared.settings import Settings

from . import api, handlers
from .service import SERVICE, VotesService
from .store import VoteStore

DEFAULT_PORT = 8003


def create_app(settings: Settings) -> FastAPI:
    """The votes service: HTTP API plus its answer and moderation projection consumers."""
    runtime = ServiceRuntime(SERVICE, settings)
    store = VoteStore(runtime.redis, runtime.committer, runtime.tag, settings.stream_maxlen)
    service = VotesService(store, WriteLimit.of(runtime.tag, settings))
    handlers.register(runtime.consumer, service)
    app = create_http_app(
        runtime,
        [api.router],
        "One vote per user per answer, and each answer's helpful/unhelpful tally.",
        statuses=api.STATUSES,
    )
    app.state.service = service
    return app
