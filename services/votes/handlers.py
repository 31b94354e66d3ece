"""Event subscribers of the votes service: thin, idempotent, one per event."""

from __future__ import annotations

from shared.consumer import EventConsumer
from shared.events import AnswerPosted, ModerationDecided

from .service import VotesService


def register(consumer: EventConsumer, service: VotesService) -> None:
    """Subscribe the projection of answers, and of moderators' decisions on them."""

    @consumer.on(AnswerPosted)
    async def on_answer_posted(event: AnswerPosted) -> None:
        await service.on_answer_posted(event)

    @consumer.on(ModerationDecided)
    async def on_moderation_decided(event: ModerationDecided) -> None:
        await service.on_moderation_decided(event)
