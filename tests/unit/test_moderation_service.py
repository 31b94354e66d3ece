"""Moderation's service layer against hand-written fakes (no Redis, no HTTP)."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.questions.moderation import domain
from services.questions.moderation.service import (
    BadQueueCursor,
    DecideItem,
    FlagItem,
    ItemHidden,
    ItemNotFound,
    ItemRef,
    ModerationConflict,
    ModerationService,
    OwnItem,
    UnknownReason,
)
from shared.events import ItemFlagged, ModerationDecided
from shared.service import end_tasks
from tests.factories import answer_posted
from tests.unit.fakes import FakeQuestionStore
from tests.unit.moderation_fakes import FakeModerationStore

QID, AID = "q1", "a1"
QUESTION = ItemRef(QID)
ANSWER = ItemRef(QID, AID)


async def build() -> tuple[ModerationService, FakeModerationStore]:
    questions = FakeQuestionStore()
    questions.questions[QID] = {
        "id": QID,
        "title": "Acne scars on my cheeks",
        "body": "What helps with old acne scars?",
        "asker_id": "pat",
    }
    await questions.add_answer(answer_posted(QID, AID, doctor_id="doc1"))
    store = FakeModerationStore()
    return ModerationService(store, questions), store


async def project_all(service: ModerationService, store: FakeModerationStore) -> None:
    """Deliver every published event to the projection, twice (at-least-once)."""
    for event in store.events * 2:
        if isinstance(event, ItemFlagged):
            await service.on_item_flagged(event)
        elif isinstance(event, ModerationDecided):
            await service.on_moderation_decided(event)


async def test_a_flag_counts_once_per_reporter_and_names_nobody() -> None:
    service, store = await build()
    reply = await service.flag(FlagItem("reader-1", QUESTION, "spam", "  selling\x00 pills "))
    assert reply == domain.public_flag("question", QID, QID, "spam")
    again = await service.flag(FlagItem("reader-1", QUESTION, "harassment"))
    assert again["reason"] == "spam"
    await service.flag(FlagItem("reader-2", QUESTION, "other"))
    flagged = [e for e in store.events if isinstance(e, ItemFlagged)]
    assert [e.flag_count for e in flagged] == [1, 2]
    assert flagged[0].note == "selling pills"
    assert flagged[1].counts == {"spam": 1, "unsafe-medical-advice": 0, "harassment": 0, "other": 1}
    assert flagged[1].first_flagged_at == flagged[0].first_flagged_at
    assert all("reader" not in e.model_dump_json() for e in flagged)
    assert await service.my_flag("reader-2", QUESTION) == domain.public_flag(
        "question", QID, QID, "other"
    )
    assert await service.my_flag("reader-3", QUESTION) is None


async def test_nobody_flags_their_own_item_an_unknown_item_or_with_an_unknown_reason() -> None:
    service, store = await build()
    with pytest.raises(OwnItem):
        await service.flag(FlagItem("pat", QUESTION, "spam"))
    with pytest.raises(OwnItem):
        await service.flag(FlagItem("doc1", ANSWER, "spam"))
    with pytest.raises(ItemNotFound):
        await service.flag(FlagItem("reader-1", ItemRef("q-nope"), "spam"))
    with pytest.raises(ItemNotFound):
        await service.flag(FlagItem("reader-1", ItemRef(QID, "a-nope"), "spam"))
    with pytest.raises(UnknownReason):
        await service.flag(FlagItem("reader-1", QUESTION, "rude"))
    assert store.events == []


async def test_a_flag_racing_others_on_the_same_item_is_retried_with_the_new_count() -> None:
    service, store = await build()
    store.racing_flags = 2
    await service.flag(FlagItem("reader-1", ANSWER, "spam"))
    [event] = store.events
    assert isinstance(event, ItemFlagged)
    assert event.flag_count == 3 and event.counts["spam"] == 1 and event.counts["other"] == 2


async def test_a_flag_that_keeps_losing_the_race_is_a_conflict_not_a_lost_count() -> None:
    service, store = await build()
    store.racing_flags = 100
    with pytest.raises(ModerationConflict):
        await service.flag(FlagItem("reader-1", ANSWER, "spam"))
    assert store.events == []


async def test_the_queue_puts_the_most_flagged_first_and_redeliveries_count_nothing() -> None:
    service, store = await build()
    await service.flag(FlagItem("reader-1", QUESTION, "spam", "ads"))
    for reader in ("reader-1", "reader-2"):
        await service.flag(FlagItem(reader, ANSWER, "unsafe-medical-advice"))
    await project_all(service, store)
    page = await service.queue("open", 20, None)
    assert [(i["item_kind"], i["flag_count"]) for i in page["items"]] == [
        ("answer", 2),
        ("question", 1),
    ]
    top, second = page["items"]
    assert top["counts"]["unsafe-medical-advice"] == 2 and top["status"] == "open"
    assert second["notes"] == ["ads"] and second["title"] == "Acne scars on my cheeks"
    one = await service.queue("open", 1, None)
    assert [i["item_id"] for i in one["items"]] == [AID] and one["next_cursor"] == "1"
    rest = await service.queue("open", 1, one["next_cursor"])
    assert [i["item_id"] for i in rest["items"]] == [QID]
    with pytest.raises(BadQueueCursor):
        await service.queue("open", 1, "abc")


async def test_hide_then_restore_tells_the_author_and_moves_the_item() -> None:
    service, store = await build()
    await service.flag(FlagItem("reader-1", ANSWER, "harassment"))
    hidden = await service.decide(DecideItem("admin-1", ANSWER, "hidden"))
    assert hidden["decision"] == "hidden" and hidden["reason"] == "harassment"
    # Hiding what is hidden is no second decision; a hidden item cannot be flagged.
    assert (await service.decide(DecideItem("admin-1", ANSWER, "hidden")))["decision_version"] == 1
    with pytest.raises(ItemNotFound):
        await service.flag(FlagItem("reader-2", ANSWER, "spam"))
    await project_all(service, store)
    assert (await service.queue("open", 20, None))["items"] == []
    assert [i["item_id"] for i in (await service.queue("hidden", 20, None))["items"]] == [AID]

    restored = await service.decide(DecideItem("admin-1", ANSWER, "restored"))
    assert restored["decision_version"] == 2 and restored["reason"] == "harassment"
    await project_all(service, store)
    assert (await service.queue("hidden", 20, None))["items"] == []
    decided = [e for e in store.events if isinstance(e, ModerationDecided)]
    assert [(e.decision, e.author_id, e.decision_version) for e in decided] == [
        ("hidden", "doc1", 1),
        ("restored", "doc1", 2),
    ]
    assert all(
        "reader" not in e.model_dump_json() and "admin" not in e.model_dump_json() for e in decided
    )


async def test_the_visibility_version_moves_once_per_applied_decision_and_can_be_awaited() -> None:
    service, store = await build()
    # The watcher runs as the service's background work does.
    watcher = asyncio.create_task(service.visibility.watch_visibility())
    assert await service.visibility_version(None, 0) == 0
    # Unchanged: the long poll answers with the same version once its wait is over.
    assert await service.visibility_version(0, 0.1) == 0

    async def hide_soon() -> None:
        await asyncio.sleep(0.1)
        await service.decide(DecideItem("admin-1", QUESTION, "hidden", "spam"))
        await project_all(service, store)  # delivered twice: counted once

    hiding = asyncio.ensure_future(hide_soon())
    started = time.monotonic()
    assert await service.visibility_version(0, 3) == 1
    assert time.monotonic() - started < 1, "answered once the hide was applied, not at 3 s"
    await hiding
    # Decided but not yet applied to the pages: nothing moved for readers' caches.
    await service.decide(DecideItem("admin-1", QUESTION, "restored"))
    assert await service.visibility_version(None, 0) == 1
    await project_all(service, store)
    assert await service.visibility_version(1, 0) == 2
    await end_tasks([watcher])


async def test_restoring_what_was_never_hidden_changes_nothing() -> None:
    service, store = await build()
    reply = await service.decide(DecideItem("admin-1", QUESTION, "restored"))
    assert reply["decision_version"] == 0 and store.events == []
    with pytest.raises(UnknownReason):
        await service.decide(DecideItem("admin-1", QUESTION, "deleted"))
    with pytest.raises(ItemNotFound):
        await service.decide(DecideItem("admin-1", ItemRef("q-nope"), "hidden"))
    unflagged = await service.decide(DecideItem("admin-1", QUESTION, "hidden"))
    assert unflagged["reason"] == "other"


async def test_a_dismissal_clears_the_open_flags_tells_nobody_and_a_new_flag_reopens() -> None:
    service, store = await build()
    for reader in ("reader-1", "reader-2"):
        await service.flag(FlagItem(reader, ANSWER, "spam"))
    await project_all(service, store)
    published = list(store.events)
    dismissed = await service.decide(DecideItem("admin-1", ANSWER, "dismissed"))
    assert (dismissed["decision"], dismissed["dismissed_flags"]) == ("dismissed", 2)
    assert store.events == published  # no decision on the item: nothing published
    assert (await service.queue("open", 20, None))["items"] == []
    assert (await service.queue("hidden", 20, None))["items"] == []
    # A repeat changes nothing; a redelivered flag does not reopen it; a new flag does.
    await service.decide(DecideItem("admin-1", ANSWER, "dismissed"))
    await project_all(service, store)
    assert (await service.queue("open", 20, None))["items"] == []
    await service.flag(FlagItem("reader-3", ANSWER, "harassment"))
    await project_all(service, store)
    [reopened] = (await service.queue("open", 20, None))["items"]
    assert (reopened["flag_count"], reopened["dismissed_flags"]) == (3, 2)
    assert reopened["dismissed_at"] and reopened["last_decision"] is None
    with pytest.raises(UnknownReason):
        await service.decide(DecideItem("admin-1", ANSWER, "dismissed", "spam"))
    await service.decide(DecideItem("admin-1", ANSWER, "hidden"))
    with pytest.raises(ItemHidden):
        await service.decide(DecideItem("admin-1", ANSWER, "dismissed"))
    with pytest.raises(ItemNotFound):
        await service.decide(DecideItem("admin-1", ItemRef("q-nope"), "dismissed"))


def test_notes_are_cleaned_and_cut_and_the_top_reason_is_the_most_given() -> None:
    assert domain.clean_note("   ") is None
    assert domain.clean_note(None) is None
    assert len(domain.clean_note("x" * 1000) or "") == domain.MAX_NOTE
    assert domain.top_reason({"spam": 1, "harassment": 3}) == "harassment"
    assert domain.top_reason({}) == "other"
    assert domain.changes(None, "hidden") and not domain.changes("hidden", "hidden")
    assert domain.changes("hidden", "restored") and not domain.changes(None, "restored")
