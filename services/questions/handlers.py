"""Event subscribers of the questions service: thin, idempotent, one per event."""

from __future__ import annotations

from shared.consumer import EventConsumer
from shared.events import AnswerEdited, AnswerPosted, VoteCast

from .service import QuestionsService


def register(consumer: EventConsumer, service: QuestionsService) -> None:
    """Subscribe the page read model to answers and votes."""

    @consumer.on(AnswerPosted)
    async def on_answer_posted(event: AnswerPosted) -> None:
        await service.on_answer_posted(event)

    @consumer.on(VoteCast)
    async def on_vote_cast(event: VoteCast) -> None:
        await service.on_vote_cast(event)

    @consumer.on(AnswerEdited)
    async def on_answer_edited(event: AnswerEdited) -> None:
        await service.on_answer_edited(event)
