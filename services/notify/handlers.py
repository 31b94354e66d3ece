"""Event subscribers of the notify service: thin, idempotent, one per event."""

from __future__ import annotations

from shared.consumer import EventConsumer
from shared.events import AnswerPosted, QuestionPosted, VoteCast

from .service import NotifyService


def register(consumer: EventConsumer, service: NotifyService) -> None:
    """Subscribe the notifier to questions, answers and votes."""

    @consumer.on(QuestionPosted)
    async def on_question_posted(event: QuestionPosted) -> None:
        await service.on_question_posted(event)

    @consumer.on(AnswerPosted)
    async def on_answer_posted(event: AnswerPosted) -> None:
        await service.on_answer_posted(event)

    @consumer.on(VoteCast)
    async def on_vote_cast(event: VoteCast) -> None:
        await service.on_vote_cast(event)
