"""The peer users would pick instead: the same fan-out as a Celery task on a Redis broker.

Each task runs exactly notify's question handler (`on_questions_posted`: the batch
scripts that match, write the inbox items and publish, then the full path for what they
leave) on a batch of one event, in the worker's own event loop, so the difference
measured is dispatch and batching.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

BROKER = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/1")
app = Celery("askdoc_bench", broker=BROKER)
app.conf.update(task_ignore_result=True, worker_prefetch_multiplier=16, task_acks_late=False)

_state: dict[str, Any] = {}


@worker_process_init.connect
def _init_worker(**_: Any) -> None:
    from services.notify.app import create_app
    from services.notify.settings import NotifySettings

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    settings = NotifySettings()
    _state["app"] = create_app(settings)
    _state["loop"] = loop


@app.task(name="fanout")
def fanout(event_json: str) -> None:
    """notify's question-posted handler as a Celery task."""
    from shared.events import QuestionPosted

    parts = _state["app"].state.parts
    event = QuestionPosted.model_validate_json(event_json)
    _state["loop"].run_until_complete(_handle(parts, event))


async def _handle(parts: Any, event: Any) -> None:
    # What notify's handlers.py runs for a batch, here for a batch of one.
    for rest in await parts.alerts.on_questions_posted([event], parts.escalations.watch):
        await parts.alerts.on_question_posted(rest)
        await parts.escalations.on_question_posted(rest)
    await parts.stores.inbox.redis.incr("bench:celery:done")
