"""Wiring of the answers service: `create_app(settings)` builds everything."""

from __future__ import annotations

from fastapi import FastAPI

from shared.http import create_http_app
from shared.service import ServiceRuntime
from shared.settings import Settings

from . import api, handlers
from .service import SERVICE, AnswersService
from .store import AnswerStore

DEFAULT_PORT = 8002


def create_app(settings: Settings) -> FastAPI:
    """The answers service: HTTP API plus its question/doctor projection consumers."""
    runtime = ServiceRuntime(SERVICE, settings)
    store = AnswerStore(runtime.redis, runtime.committer, runtime.tag, settings.stream_maxlen)
    service = AnswersService(store, settings)
    handlers.register(runtime.consumer, service)
    app = create_http_app(
        runtime,
        [api.router],
        "Doctors' answers to questions, each with the doctor's public card.",
        statuses=api.STATUSES,
    )
    app.state.service = service
    return app
