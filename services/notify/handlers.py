"""Event subscribers of the notify service: thin, idempotent, one per event."""

from __future__ import annotations

from shared.consumer import EventConsumer
from shared.events import (
    AnswerAccepted,
    AnswerPosted,
    ModerationDecided,
    QuestionFollowed,
    QuestionPosted,
    QuestionUnfollowed,
    VoteCast,
)

from .alerts.escalation import Escalations
from .alerts.service import AlertService
from .inbox.service import InboxService

#: Questions per pair of script calls. A script holds its Redis shard for its whole run
#: (about 0.7 ms per question here), so a read of up to 100 entries is matched and alerted
#: in slices: page reads and votes on the same shard wait at most one slice (~35 ms).
#: Smaller slices cost throughput (more calls, each with its own setup and EXPIREs): in
#: the fan-out bench here (separate runs, so roughly), slices of 20 gave 1,014 events/s, 50
#: gave 1,264, 100 gave 1,368.
SCRIPT_SLICE = 50


def register(
    consumer: EventConsumer, alerts: AlertService, escalations: Escalations, inbox: InboxService
) -> None:
    """Subscribe the notifier to questions, answers, votes and moderation decisions."""

    @consumer.on(QuestionPosted)
    async def on_question_posted(event: QuestionPosted) -> None:
        await alerts.on_question_posted(event)
        await escalations.on_question_posted(event)

    @consumer.on_batch(QuestionPosted)
    async def on_questions_posted(events: list[QuestionPosted]) -> None:
        # Most of a batch is matched and alerted in two script calls; what is left (urgent
        # questions, held alerts) takes the full path, one question at a time and in order,
        # so a doctor's day count (and cap) sees the alerts in the order they were asked.
        # Slice by slice, each slice's rest before the next slice: the same order as reads
        # of SCRIPT_SLICE entries.
        for start in range(0, len(events), SCRIPT_SLICE):
            part = events[start : start + SCRIPT_SLICE]
            rest = await alerts.on_questions_posted(part, escalations.watch)
            for event in rest:
                await on_question_posted(event)

    @consumer.on(AnswerPosted)
    async def on_answer_posted(event: AnswerPosted) -> None:
        await escalations.on_answer_posted(event)
        await alerts.on_answer_posted(event)

    @consumer.on(VoteCast)
    async def on_vote_cast(event: VoteCast) -> None:
        await alerts.on_vote_cast(event)

    @consumer.on(AnswerAccepted)
    async def on_answer_accepted(event: AnswerAccepted) -> None:
        await alerts.on_answer_accepted(event)

    @consumer.on(QuestionFollowed)
    async def on_question_followed(event: QuestionFollowed) -> None:
        await alerts.on_follow_changed(event)

    @consumer.on(QuestionUnfollowed)
    async def on_question_unfollowed(event: QuestionUnfollowed) -> None:
        await alerts.on_follow_changed(event)

    @consumer.on(ModerationDecided)
    async def on_moderation_decided(event: ModerationDecided) -> None:
        await escalations.on_moderation_decided(event)
        await inbox.on_moderation_decided(event)
        await alerts.on_moderation_decided(event)
