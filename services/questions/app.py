"""Wiring of the questions service: `create_app(settings)` builds everything."""

from __future__ import annotations

from fastapi import FastAPI

from shared import geo
from shared.http import create_http_app
from shared.ratelimit import WriteLimit
from shared.service import ServiceRuntime
from shared.settings import Settings

from . import api, handlers
from .moderation import api as moderation_api
from .moderation import watch
from .moderation.service import ModerationService
from .moderation.store import ModerationStore
from .service import SERVICE, QuestionsService
from .store import QuestionStore

DEFAULT_PORT = 8001


def create_app(settings: Settings) -> FastAPI:
    """The questions service: HTTP API plus its answer/vote consumers."""
    runtime = ServiceRuntime(SERVICE, settings)
    store = QuestionStore(runtime.redis, runtime.committer, runtime.tag, settings.stream_maxlen)
    service = QuestionsService(store, settings, WriteLimit.of(runtime.tag, settings))
    moderation_store = ModerationStore(
        runtime.redis, runtime.committer, runtime.tag, settings.flag_retention_s
    )
    # Its blocking read ends well inside the socket timeout, however short that is set.
    block_s = min(watch.BLOCK_S, settings.redis_socket_timeout_s / 2)
    moderation = ModerationService(
        moderation_store, store, watch.VisibilityWatch(moderation_store, block_s)
    )
    handlers.register(runtime.consumer, service, moderation)
    runtime.warmups.append(geo.warm_up)
    runtime.startups.append(store.migrate_indexes)
    runtime.background.append(store.keep_migrating)
    runtime.background.append(moderation.visibility.watch_visibility)
    app = create_http_app(
        runtime,
        [api.router, moderation_api.router],
        "Questions, the ranked question page, related questions and the taxonomy.",
        statuses={**api.STATUSES, **moderation_api.STATUSES},
    )
    app.state.service = service
    app.state.moderation = moderation
    return app
