"""Hidden items leave the inboxes, on a real redis-server (issue 16 item 5).

When a moderator hides a question or an answer, every notification about it leaves its
recipient's inbox: the listing, the unread count, the live stream's replay and fetch. The
author's own notice of the decision stays. A restore brings the items back, read or unread
as they were; the newest decision wins, whatever order or how often the events come; items
made while hidden are born hidden; a pending webhook about a hidden item is not sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.notify.api import DoctorIn
from services.notify.inbox import service as inbox_service
from services.notify.inbox.service import ListInbox, MarkRead, NotificationNotFound
from services.notify.parts import NotifyParts, build_delivery, build_parts
from services.notify.settings import NotifySettings
from shared import streams
from shared.atomic import Committer
from shared.auth import Principal
from shared.events import (
    AnswerAccepted,
    AnswerPosted,
    DoctorCard,
    Location,
    ModerationDecided,
    QuestionFollowed,
    QuestionPosted,
)
from tests.receivers import WebhookReceiver, verify
from tests.support import JWT_SECRET, WEBHOOK_SECRET_KEY, doctor_profile, verified

TAG = streams.slot_tag(streams.NOTIFICATION_SENT)
SECRET = "whsec_YXNrZG9jLXRlc3Qtd2ViaG9vay1zZWNyZXQtMDAwMDA="
#: A notification id older than any: the live stream replays everything after it.
OLDEST = "n" + "0" * 24
LA = Location(city="Los Angeles", state="CA", lat=34.05, lon=-118.24)


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
async def parts(redis_url: str, hooks: WebhookReceiver) -> AsyncIterator[NotifyParts]:
    settings = NotifySettings(  # type: ignore[call-arg]
        redis_url=redis_url,
        jwt_secret=JWT_SECRET,
        webhook_allow_private=True,
        webhook_secret_key=WEBHOOK_SECRET_KEY,
    )
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    built = build_parts(client, Committer(client), TAG, settings)
    admin = Principal("admin", "admin", "admin")
    for doctor in ("d0", "d1"):
        profile = doctor_profile(doctor, webhook_url=hooks.url(f"/{doctor}"), webhook_secret=SECRET)
        await built.directory.save_profile(
            DoctorIn(**verified(profile, doctor)).command(doctor, admin)
        )
    await built.stores.outbox.ensure_group()
    yield built
    await client.aclose()


def posted(qid: str, asker: str = "p1") -> QuestionPosted:
    return QuestionPosted(
        correlation_id="c",
        producer="questions",
        question_id=qid,
        title=f"Acne scars ({qid})",
        body="What helps with old acne scars?",
        topics=["acne"],
        specialties=["dermatology"],
        location=LA,
        asker_id=asker,
    )


def answered(qid: str, aid: str, doctor: str) -> AnswerPosted:
    return AnswerPosted(
        correlation_id="c",
        producer="answers",
        answer_id=aid,
        question_id=qid,
        body="Laser resurfacing and microneedling both help.",
        doctor=DoctorCard(id=doctor, name=f"Dr {doctor}"),
        created_at=datetime.now(UTC),
    )


def decided(kind: str, item_id: str, qid: str, decision: str, version: int) -> ModerationDecided:
    author = "p1" if kind == "question" else "d0"
    return ModerationDecided(
        correlation_id="c",
        producer="questions",
        item_kind=kind,  # type: ignore[arg-type]
        item_id=item_id,
        question_id=qid,
        author_id=author,
        decision=decision,  # type: ignore[arg-type]
        reason="spam",
        decision_version=version,
    )


async def ask(parts: NotifyParts, event: QuestionPosted) -> None:
    """As the handler does: the batch path, then the full path for what it leaves."""
    for rest in await parts.alerts.on_questions_posted([event], parts.escalations.watch):
        await parts.alerts.on_question_posted(rest)


async def moderate(parts: NotifyParts, event: ModerationDecided) -> None:
    """As notify's handler does: the inboxes, then the author's notice."""
    await parts.inbox.on_moderation_decided(event)
    await parts.alerts.on_moderation_decided(event)


async def inbox(parts: NotifyParts, who: str) -> tuple[list[tuple[str, Any, Any, bool]], int]:
    """(kind, question, answer, read) of every listed item, newest first; the unread count."""
    page = await parts.inbox.page(ListInbox(recipient=who, limit=50))
    items = [(i["kind"], i["question_id"], i["answer_id"], i["read"]) for i in page["items"]]
    unread = await parts.inbox.page(ListInbox(recipient=who, limit=50, unread_only=True))
    # The count is what the unread listing lists: never an item nobody can see.
    assert page["unread_count"] == len(unread["items"])
    return items, int(page["unread_count"])


def kinds(listed: tuple[list[tuple[str, Any, Any, bool]], int]) -> set[tuple[str, Any, Any]]:
    return {(k, q, a) for k, q, a, _ in listed[0]}


async def test_a_hidden_question_leaves_every_inbox_but_its_authors_notice_and_comes_back(
    parts: NotifyParts,
) -> None:
    await ask(parts, posted("q1"))
    await parts.alerts.on_follow_changed(
        QuestionFollowed(
            correlation_id="c", producer="q", question_id="q1", user_id="f1", follow_version=1
        )
    )
    await parts.alerts.on_answer_posted(answered("q1", "a1", "d0"))
    await parts.alerts.on_answer_accepted(
        AnswerAccepted(
            correlation_id="c", producer="q", question_id="q1", answer_id="a1", doctor_id="d0"
        )
    )
    before = {who: await inbox(parts, who) for who in ("d0", "d1", "p1", "f1")}
    assert kinds(before["d0"]) == {("question-match", "q1", None), ("answer-accepted", "q1", "a1")}
    assert kinds(before["d1"]) == {("question-match", "q1", None)}
    assert kinds(before["f1"]) == {("new-answer", "q1", "a1")}
    assert before["d0"][1] == 2 and before["f1"][1] == 1 and before["p1"][1] == 1
    # d1 has read the alert: a restore must bring it back read, not count it again.
    [d1_alert] = (await parts.inbox.page(ListInbox(recipient="d1", limit=5)))["items"]
    await parts.inbox.mark_read(MarkRead(recipient="d1", notification_id=d1_alert["id"]))
    d0_ids = [i["id"] for i in (await parts.inbox.page(ListInbox("d0", 5)))["items"]]

    for _ in range(2):  # a redelivery changes nothing more
        await moderate(parts, decided("question", "q1", "q1", "hidden", 1))
        for who in ("d0", "d1", "f1"):
            assert await inbox(parts, who) == ([], 0), who
        asker = await inbox(parts, "p1")
        assert kinds(asker) == {("item-hidden", "q1", None)} and asker[1] == 1
    # Nor does the live stream show them: not replayed, not fetched, not to be marked read.
    assert await parts.inbox.items_after("d0", OLDEST) == []
    assert await parts.inbox.items(d0_ids) == [None, None]
    with pytest.raises(NotificationNotFound):
        await parts.inbox.mark_read(MarkRead(recipient="d0", notification_id=d0_ids[0]))

    # Made while hidden (an answer in flight): born hidden, for the followers and the asker.
    await parts.alerts.on_answer_posted(answered("q1", "a2", "d1"))
    assert await inbox(parts, "f1") == ([], 0)
    assert kinds(await inbox(parts, "p1")) == {("item-hidden", "q1", None)}

    await moderate(parts, decided("question", "q1", "q1", "restored", 2))
    d0, d1, f1 = [await inbox(parts, who) for who in ("d0", "d1", "f1")]
    assert d0 == before["d0"]
    assert d1 == ([("question-match", "q1", None, True)], 0)
    assert kinds(f1) == {("new-answer", "q1", "a1"), ("new-answer", "q1", "a2")} and f1[1] == 2
    asker = await inbox(parts, "p1")
    assert {k for k, *_ in asker[0]} == {"item-hidden", "item-restored", "new-answer"}
    replayed = await parts.inbox.items_after("d0", OLDEST)
    assert {i["kind"] for i in replayed} == {"question-match", "answer-accepted"}

    # The hiding, late or again, is older than the restore: it changes nothing.
    await parts.inbox.on_moderation_decided(decided("question", "q1", "q1", "hidden", 1))
    assert await inbox(parts, "d0") == before["d0"]


async def test_an_item_stays_hidden_while_the_answer_or_question_it_is_about_is_hidden(
    parts: NotifyParts,
) -> None:
    await ask(parts, posted("q2"))
    await parts.alerts.on_answer_posted(answered("q2", "a3", "d0"))
    await parts.alerts.on_answer_accepted(
        AnswerAccepted(
            correlation_id="c", producer="q", question_id="q2", answer_id="a3", doctor_id="d0"
        )
    )
    everything = kinds(await inbox(parts, "d0"))
    assert everything == {("question-match", "q2", None), ("answer-accepted", "q2", "a3")}
    notice = {("item-hidden", "q2", "a3")}

    await moderate(parts, decided("answer", "a3", "q2", "hidden", 1))
    # The answer's doctor keeps the notice of the hiding; the alerts about the answer go.
    assert kinds(await inbox(parts, "d0")) == {("question-match", "q2", None), *notice}
    assert await inbox(parts, "p1") == ([], 0)  # the asker's new-answer
    await parts.inbox.on_moderation_decided(decided("question", "q2", "q2", "hidden", 1))
    assert kinds(await inbox(parts, "d0")) == notice
    # The question back: what is about the hidden answer stays out.
    await parts.inbox.on_moderation_decided(decided("question", "q2", "q2", "restored", 2))
    assert kinds(await inbox(parts, "d0")) == {("question-match", "q2", None), *notice}
    assert await inbox(parts, "p1") == ([], 0)
    await moderate(parts, decided("answer", "a3", "q2", "restored", 2))
    d0 = await inbox(parts, "d0")
    assert kinds(d0) == everything | notice | {("item-restored", "q2", "a3")}
    assert d0[1] == 4
    assert kinds(await inbox(parts, "p1")) == {("new-answer", "q2", "a3")}


async def test_a_restore_that_overtakes_its_hiding_wins(parts: NotifyParts) -> None:
    await ask(parts, posted("q3"))
    shown = await inbox(parts, "d0")
    assert shown[1] == 1
    await parts.inbox.on_moderation_decided(decided("question", "q3", "q3", "restored", 2))
    await parts.inbox.on_moderation_decided(decided("question", "q3", "q3", "hidden", 1))
    assert await inbox(parts, "d0") == shown


async def test_a_question_hidden_before_notify_saw_it_alerts_in_hiding_and_sends_nothing(
    parts: NotifyParts, hooks: WebhookReceiver
) -> None:
    # The decision overtook the question (a backlog): its alerts are made hidden, by the
    # batch script, and their pending webhooks are not sent; the other question's are.
    await parts.inbox.on_moderation_decided(decided("question", "q4", "q4", "hidden", 1))
    await ask(parts, posted("q4"))
    await ask(parts, posted("q5"))
    assert kinds(await inbox(parts, "d0")) == {("question-match", "q5", None)}
    assert (await inbox(parts, "d0"))[1] == 1

    client = parts.stores.inbox.redis
    worker = build_delivery(client, Committer(client), TAG, parts.inbox.settings)
    await worker._read_once()
    await asyncio.gather(*worker._tasks)
    await worker.stop(1)
    assert sorted(d.path for d in hooks.deliveries) == ["/d0", "/d1"]
    bodies = b"".join(d.body for d in hooks.deliveries)
    assert b"q5" in bodies and b"q4" not in bodies
    notes = await client.xrange(f"{TAG}:outbox")
    statuses = {}
    for _, fields in notes:
        [note] = await parts.stores.inbox.notes([fields["nid"]])
        statuses[(fields["recipient"], note["item"].count('"q4"') > 0)] = note["d:webhook"]
    assert statuses == {
        ("d0", True): "skipped",
        ("d1", True): "skipped",
        ("d0", False): "delivered",
        ("d1", False): "delivered",
    }
    assert (await client.xpending(f"{TAG}:outbox", "notify"))["pending"] == 0

    # Restored: the alerts come back unread (what was not sent stays unsent).
    await parts.inbox.on_moderation_decided(decided("question", "q4", "q4", "restored", 2))
    d0 = await inbox(parts, "d0")
    assert kinds(d0) == {("question-match", "q4", None), ("question-match", "q5", None)}
    assert d0[1] == 2


async def test_a_question_with_many_followers_is_hidden_in_slices(
    parts: NotifyParts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_service, "MODERATION_BATCH", 3)
    await ask(parts, posted("q6"))
    followers = [f"f{n}" for n in range(8)]
    for user in followers:
        await parts.alerts.on_follow_changed(
            QuestionFollowed(
                correlation_id="c", producer="q", question_id="q6", user_id=user, follow_version=1
            )
        )
    await parts.alerts.on_answer_posted(answered("q6", "a6", "d0"))
    # 2 matches, the asker and 8 followers: 11 items, 3 a slice.
    assert (
        await parts.inbox.on_moderation_decided(decided("question", "q6", "q6", "hidden", 1)) == 4
    )
    for who in ("d0", "d1", "p1", *followers):
        assert await inbox(parts, who) == ([], 0), who
    assert (
        await parts.inbox.on_moderation_decided(decided("question", "q6", "q6", "restored", 2)) == 4
    )
    for who in followers:
        assert await inbox(parts, who) == ([("new-answer", "q6", "a6", False)], 1), who


async def test_a_digest_leaves_out_a_question_hidden_while_it_was_held(parts: NotifyParts) -> None:
    admin = Principal("admin", "admin", "admin")
    busy = DoctorIn(**verified(doctor_profile("d2", daily_cap=1), "d2"))
    await parts.directory.save_profile(busy.command("d2", admin))
    for qid in ("q7", "q8", "q9"):
        await ask(parts, posted(qid))
    assert await inbox(parts, "d2") == ([("question-match", "q7", None, False)], 1)
    await parts.inbox.on_moderation_decided(decided("question", "q8", "q8", "hidden", 1))

    # The next day the held alerts go out: the digest lists the question still shown.
    assert await parts.held.release_due(datetime.now(UTC) + timedelta(days=1, hours=1)) == 1
    page = await parts.inbox.page(ListInbox(recipient="d2", limit=50))
    [digest] = [i for i in page["items"] if i["kind"] == "digest"]
    assert [e["question_id"] for e in digest["items"]] == ["q9"]
    assert digest["reason"]["question_ids"] == ["q9"] and digest["reason"]["count"] == 1
    assert "q8" not in json.dumps(page)
    assert page["unread_count"] == 2
    # The hidden one went out alone, hidden: a restore shows it.
    await parts.inbox.on_moderation_decided(decided("question", "q8", "q8", "restored", 2))
    d2 = await inbox(parts, "d2")
    assert kinds(d2) == {
        ("question-match", "q7", None),
        ("question-match", "q8", None),
        ("digest", None, None),
    }
    assert d2[1] == 3


async def test_a_delivered_digest_drops_a_question_hidden_later_and_goes_once_all_are(
    parts: NotifyParts,
) -> None:
    admin = Principal("admin", "admin", "admin")
    busy = DoctorIn(**verified(doctor_profile("d3", daily_cap=1), "d3"))
    await parts.directory.save_profile(busy.command("d3", admin))
    for qid in ("q20", "q21", "q22"):
        await ask(parts, posted(qid))
    assert await parts.held.release_due(datetime.now(UTC) + timedelta(days=1, hours=1)) == 1

    async def digests() -> tuple[list[dict[str, Any]], int]:
        page = await parts.inbox.page(ListInbox(recipient="d3", limit=50))
        return [i for i in page["items"] if i["kind"] == "digest"], page["unread_count"]

    [digest], unread = await digests()
    assert sorted(e["question_id"] for e in digest["items"]) == ["q21", "q22"] and unread == 2

    # Hidden after the digest went out: its line leaves the digest (ids, counts, texts),
    # as read over HTTP and as replayed on the live stream; the digest stays unread.
    await moderate(parts, decided("question", "q21", "q21", "hidden", 1))
    [digest], unread = await digests()
    assert [e["question_id"] for e in digest["items"]] == ["q22"] and unread == 2
    assert digest["reason"]["question_ids"] == ["q22"] and digest["reason"]["count"] == 1
    assert digest["title"] == "1 question held over your daily cap"
    assert "q21" not in json.dumps(digest) and "Acne scars (q21)" not in json.dumps(digest)
    [replayed] = [i for i in await parts.inbox.items_after("d3", OLDEST) if i["kind"] == "digest"]
    assert replayed == digest
    # An open stream keeps the digest: a question of it is still shown.
    assert await parts.inbox.withdrawn(("q", "q21"), {"d3"}) == {}
    # Marked read, it is shown as read, still without the hidden line.
    read = await parts.inbox.mark_read(MarkRead("d3", digest["id"]))
    assert read == {**digest, "read": True}

    # Every question of it hidden: the digest goes, from the listing and the unread count,
    # and from an open stream; a restore brings it back with the restored line.
    assert await parts.inbox.withdrawn(("q", "q22"), {"d3"}) == {"d3": [digest["id"]]}
    await moderate(parts, decided("question", "q22", "q22", "hidden", 1))
    assert await digests() == ([], 1)
    with pytest.raises(NotificationNotFound):
        await parts.inbox.mark_read(MarkRead("d3", digest["id"]))
    # An open stream gets the digest back with the restored line, before the inbox has
    # applied the restore, as the inbox lists it once it has.
    back = await parts.inbox.restored(("q", "q21"), {"d3", "nobody"})
    await moderate(parts, decided("question", "q21", "q21", "restored", 2))
    assert back == {"d3": [(await digests())[0][0]]}
    [digest], unread = await digests()
    assert [e["question_id"] for e in digest["items"]] == ["q21"] and digest["read"]
    assert unread == 1  # read before it was hidden, read again once back


async def test_a_digest_made_before_digests_were_indexed_goes_once_all_its_questions_are_hidden(
    parts: NotifyParts,
) -> None:
    admin = Principal("admin", "admin", "admin")
    busy = DoctorIn(**verified(doctor_profile("d6", daily_cap=1), "d6"))
    await parts.directory.save_profile(busy.command("d6", admin))
    for qid in ("q60", "q61", "q62"):
        await ask(parts, posted(qid))
    assert await parts.held.release_due(datetime.now(UTC) + timedelta(days=1, hours=1)) == 1
    # As an older release made it: not listed under the questions it lists.
    store = parts.stores.inbox
    await store.redis.delete(*(store._about_key("q", q) for q in ("q61", "q62")))

    async def listed() -> tuple[list[str], int]:
        page = await parts.inbox.page(ListInbox(recipient="d6", limit=50))
        return sorted(i["kind"] for i in page["items"]), page["unread_count"]

    assert await listed() == (["digest", "question-match"], 2)
    await moderate(parts, decided("question", "q61", "q61", "hidden", 1))
    await moderate(parts, decided("question", "q62", "q62", "hidden", 1))
    # Nothing of it is shown, yet it counted as unread.
    assert await listed() == (["question-match"], 2)

    indexed, hidden = await store.index_old_digests()
    assert indexed >= 1 and hidden >= 1
    assert await listed() == (["question-match"], 1)
    assert await store.index_old_digests() == (0, 0)  # once
    # Indexed now: a restore brings it back with the restored line, unread as before.
    await moderate(parts, decided("question", "q62", "q62", "restored", 2))
    page = await parts.inbox.page(ListInbox(recipient="d6", limit=50))
    [digest] = [i for i in page["items"] if i["kind"] == "digest"]
    assert [e["question_id"] for e in digest["items"]] == ["q62"] and not digest["read"]
    assert page["unread_count"] == 2


async def test_an_open_stream_is_told_which_items_a_hiding_withdraws(parts: NotifyParts) -> None:
    await ask(parts, posted("q30", asker="p30"))
    await parts.alerts.on_follow_changed(
        QuestionFollowed(
            correlation_id="c", producer="q", question_id="q30", user_id="fan30", follow_version=1
        )
    )
    await parts.alerts.on_answer_posted(answered("q30", "a30", "d1"))

    async def ids(who: str) -> list[str]:
        return [i["id"] for i in (await parts.inbox.page(ListInbox(who, 50)))["items"]]

    matched, told = await ids("d0"), await ids("fan30")
    assert len(matched) == 1 and len(told) == 1

    # Only the recipients asked about (those with an open stream here), and only the items
    # about what was hidden: the answer's new-answer alert, not the question's match.
    assert await parts.inbox.withdrawn(("a", "a30"), {"d0", "fan30"}) == {"fan30": told}
    assert await parts.inbox.withdrawn(("a", "a30"), {"d0"}) == {}
    assert await parts.inbox.withdrawn(("q", "q30"), {"d0", "nobody"}) == {"d0": matched}
    # The author's notice of a hiding is about nothing: it is never withdrawn.
    await moderate(parts, decided("question", "q30", "q30", "hidden", 1))
    assert len(await ids("p1")) == 1  # decided() names p1 the question's author
    assert await parts.inbox.withdrawn(("q", "q30"), {"p1"}) == {}


async def test_an_open_stream_gets_back_what_a_restore_brings_back_as_the_inbox_lists_it(
    parts: NotifyParts,
) -> None:
    await ask(parts, posted("q50", asker="p50"))
    await parts.alerts.on_follow_changed(
        QuestionFollowed(
            correlation_id="c", producer="q", question_id="q50", user_id="fan50", follow_version=1
        )
    )
    await parts.alerts.on_answer_posted(answered("q50", "a50", "d1"))

    async def items(who: str) -> list[dict[str, Any]]:
        """The alerts listed, less the notices of a hiding (d0 wrote the answer)."""
        page = await parts.inbox.page(ListInbox(who, 50))
        return [i for i in page["items"] if i["kind"] != "item-hidden"]

    matched, told = await items("d0"), await items("fan50")
    assert len(matched) == 1 and len(told) == 1
    await moderate(parts, decided("question", "q50", "q50", "hidden", 1))
    await moderate(parts, decided("answer", "a50", "q50", "hidden", 1))
    assert await items("d0") == [] and await items("fan50") == []

    # The question restored (not yet applied by the inbox): the match comes back as it was
    # listed; the new-answer alert stays out, its answer still hidden. Nobody else is told.
    back = await parts.inbox.restored(("q", "q50"), {"d0", "fan50", "nobody"})
    assert back == {"d0": matched}
    await moderate(parts, decided("question", "q50", "q50", "restored", 2))
    assert await items("d0") == matched and await items("fan50") == []
    # Then the answer: its alert comes back, to its recipient's open stream only.
    assert await parts.inbox.restored(("a", "a50"), {"d0", "fan50"}) == {"fan50": told}
    await moderate(parts, decided("answer", "a50", "q50", "restored", 2))
    assert await items("fan50") == told
    # The authors' notices of the hidings are about nothing: no restore sends them.
    assert await parts.inbox.restored(("a", "a50"), {"d0"}) == {}
    assert await parts.inbox.restored(("q", "q50"), {"p1"}) == {}


async def test_a_digest_webhook_leaves_out_a_question_hidden_before_it_went_out(
    parts: NotifyParts, hooks: WebhookReceiver
) -> None:
    admin = Principal("admin", "admin", "admin")
    profile = doctor_profile("d4", daily_cap=1, webhook_url=hooks.url("/d4"), webhook_secret=SECRET)
    await parts.directory.save_profile(DoctorIn(**verified(profile, "d4")).command("d4", admin))
    for qid in ("q40", "q41", "q42"):
        await ask(parts, posted(qid))
    assert await parts.held.release_due(datetime.now(UTC) + timedelta(days=1, hours=1)) == 1
    # Hidden after the digest was made, before its webhook went out.
    await moderate(parts, decided("question", "q41", "q41", "hidden", 1))
    client = parts.stores.inbox.redis
    worker = build_delivery(client, Committer(client), TAG, parts.inbox.settings)
    await worker._read_once()
    await asyncio.wait_for(asyncio.gather(*worker._tasks), 20)
    await worker.stop(1)
    sent = [verify(d, SECRET) for d in hooks.to("/d4")]
    [digest] = [s["data"]["notification"] for s in sent if s["type"] == "notification.digest"]
    assert [line["question_id"] for line in digest["items"]] == ["q42"]
    assert digest["reason"]["question_ids"] == ["q42"]
    assert "q41" not in json.dumps(sent)


async def test_a_webhook_waiting_to_retry_is_not_sent_once_its_question_is_hidden(
    parts: NotifyParts, hooks: WebhookReceiver
) -> None:
    hooks.behaviours["/d0"] = lambda n: (503, {})  # d0's receiver is down; d1's is fine
    await ask(parts, posted("q10"))
    [alert] = (await parts.inbox.page(ListInbox(recipient="d0", limit=5)))["items"]
    client = parts.stores.inbox.redis
    # The first wait about 1 s, then 2 s at most, three tries in all.
    quick = {"retry_base_s": 1.0, "retry_max_s": 2.0, "webhook_max_attempts": 3}
    settings = parts.inbox.settings.model_copy(update=quick)
    worker = build_delivery(client, Committer(client), TAG, settings)
    await worker._read_once()

    async def status() -> str:
        [note] = await parts.stores.inbox.notes([alert["id"]])
        return note["d:webhook"]

    for _ in range(100):
        if await status() == "retrying":
            break
        await asyncio.sleep(0.05)
    assert await status() == "retrying"
    await parts.inbox.on_moderation_decided(decided("question", "q10", "q10", "hidden", 1))
    await asyncio.wait_for(asyncio.gather(*worker._tasks), 20)
    await worker.stop(1)
    assert await status() == "skipped"
    assert [d.status for d in hooks.to("/d0")] == [503]  # tried once, never again
    assert [d.status for d in hooks.to("/d1")] == [200]  # went out before the hiding
