"""Event subscribers of the answers service: thin, idempotent, one per event."""

from __future__ import annotations

from shared.consumer import EventConsumer
from shared.events import DoctorProfileChanged, ModerationDecided, QuestionPosted

from .service import AnswersService


def register(consumer: EventConsumer, service: AnswersService) -> None:
    """Subscribe the question and doctor projections, and hidden answers."""

    @consumer.on(QuestionPosted)
    async def on_question_posted(event: QuestionPosted) -> None:
        await service.on_question_posted(event)

    @consumer.on(DoctorProfileChanged)
    async def on_doctor_profile_changed(event: DoctorProfileChanged) -> None:
        await service.on_doctor_profile_changed(event)

    @consumer.on(ModerationDecided)
    async def on_moderation_decided(event: ModerationDecided) -> None:
        await service.on_moderation_decided(event)
