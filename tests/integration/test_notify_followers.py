"""notify's projection of followers on a real redis-server: newest follow version wins, and a
new answer reaches every follower once, batch after batch, never the answering doctor."""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as aioredis

from services.notify.parts import build_parts
from services.notify.settings import NotifySettings
from shared import streams
from shared.atomic import Committer
from shared.events import (
    AnswerPosted,
    DoctorCard,
    NotificationSent,
    QuestionFollowed,
    QuestionUnfollowed,
)
from tests.support import JWT_SECRET

TAG = streams.slot_tag(streams.NOTIFICATION_SENT)


def change(user: str, version: int, on: bool) -> QuestionFollowed | QuestionUnfollowed:
    kind = QuestionFollowed if on else QuestionUnfollowed
    return kind(
        correlation_id="c",
        producer="questions",
        question_id="q1",
        user_id=user,
        follow_version=version,
    )


async def test_followers_are_alerted_once_across_batches(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    settings = NotifySettings(jwt_secret=JWT_SECRET, follow_alert_batch=3)
    parts = build_parts(client, Committer(client), TAG, settings)
    await parts.stores.alerts.remember_question("q1", "asker", "A title", 3600)
    users = [f"u{n}" for n in range(7)] + ["dr-a"]
    for user in users:
        await parts.alerts.on_follow_changed(change(user, 1, True))
    # u6 unfollows; a late copy of its older follow changes nothing.
    await parts.alerts.on_follow_changed(change("u6", 2, False))
    await parts.alerts.on_follow_changed(change("u6", 1, True))
    following = sorted([*users[:6], "dr-a"])
    assert await parts.stores.alerts.followers("q1", None, 100) == following
    # Pages by user id, each after the last one of the previous page.
    assert await parts.stores.alerts.followers("q1", following[2], 3) == following[3:6]

    answer = AnswerPosted(
        correlation_id="c",
        producer="answers",
        answer_id="a1",
        question_id="q1",
        body="x",
        doctor=DoctorCard(id="dr-a", name="Dr A"),
        created_at=datetime.now(UTC),
    )
    for _ in range(2):  # a redelivery alerts nobody twice
        await parts.alerts.on_answer_posted(answer)
    sent = [
        NotificationSent.model_validate_json(fields["__data__"])
        for _, fields in await client.xrange(streams.NOTIFICATION_SENT)
    ]
    assert sorted(e.recipient_id for e in sent) == sorted(["asker", *users[:6]])
    assert {e.kind for e in sent} == {"new-answer"}
    await client.aclose()
