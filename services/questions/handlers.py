"""Event subscribers of the questions service: thin, idempotent, one per event."""

from __future__ import annotations

from shared.consumer import EventConsumer
from shared.events import (
    AnswerEdited,
    AnswerPosted,
    DoctorProfileChanged,
    ItemFlagged,
    ModerationDecided,
    VoteCast,
)

from .moderation.service import ModerationService
from .service import QuestionsService


def register(
    consumer: EventConsumer, service: QuestionsService, moderation: ModerationService
) -> None:
    """Subscribe the page read model to answers, votes and doctors' status, the queue to
    flags and decisions."""

    @consumer.on(AnswerPosted)
    async def on_answer_posted(event: AnswerPosted) -> None:
        await service.on_answer_posted(event)

    @consumer.on(VoteCast)
    async def on_vote_cast(event: VoteCast) -> None:
        await service.on_vote_cast(event)

    @consumer.on(AnswerEdited)
    async def on_answer_edited(event: AnswerEdited) -> None:
        await service.on_answer_edited(event)

    @consumer.on(DoctorProfileChanged)
    async def on_doctor_profile_changed(event: DoctorProfileChanged) -> None:
        await service.on_doctor_profile_changed(event)

    @consumer.on(ItemFlagged)
    async def on_item_flagged(event: ItemFlagged) -> None:
        await moderation.on_item_flagged(event)

    @consumer.on(ModerationDecided)
    async def on_moderation_decided(event: ModerationDecided) -> None:
        await moderation.on_moderation_decided(event)
