"""The answers service layer against a hand-written fake store (no Redis, no HTTP)."""

from __future__ import annotations

import pytest

from services.answers.domain import InvalidAnswer
from services.answers.service import (
    AlreadyAnswered,
    AnswerNotFound,
    AnswersService,
    DoctorNotInDirectory,
    EditAnswer,
    NotYourAnswer,
    PostAnswer,
    QuestionNotFound,
)
from shared.events import AnswerEdited, AnswerPosted, ItemKind
from shared.idempotency import IdempotencyKeyReused
from shared.settings import Settings
from tests.factories import ANSWER_BODY as BODY
from tests.factories import doctor_profile_changed as profile
from tests.factories import moderation_decided as decided
from tests.factories import question_posted
from tests.support import JWT_SECRET
from tests.unit.fakes import FakeAnswerStore


async def build() -> tuple[AnswersService, FakeAnswerStore]:
    store = FakeAnswerStore()
    service = AnswersService(store, Settings(jwt_secret=JWT_SECRET))
    await service.on_question_posted(question_posted("q1"))
    await service.on_doctor_profile_changed(profile("doc1", 1, "Jon A. Perlman"))
    return service, store


async def test_an_answer_carries_the_doctors_card_and_is_announced_once() -> None:
    service, store = await build()
    answer = await service.post_answer(PostAnswer("q1", "doc1", BODY, headline=" Botox "))
    assert answer["headline"] == "Botox" and answer["body"] == BODY
    assert answer["doctor"]["name"] == "Jon A. Perlman"
    assert answer["doctor"]["specialty"] == "plastic-surgery"
    [event] = store.events
    assert isinstance(event, AnswerPosted) and event.answer_id == answer["id"]
    listing = await service.answers_of("q1")
    assert listing["answer_count"] == 1 and listing["items"][0]["id"] == answer["id"]
    assert await service.get_answer(answer["id"]) == answer


async def test_the_newest_profile_wins() -> None:
    service, _ = await build()
    await service.on_doctor_profile_changed(profile("doc1", 3, "Newest"))
    await service.on_doctor_profile_changed(profile("doc1", 2, "Older"))
    answer = await service.post_answer(PostAnswer("q1", "doc1", BODY))
    assert answer["doctor"]["name"] == "Newest"


async def test_one_answer_per_doctor_per_question() -> None:
    service, store = await build()
    first = await service.post_answer(PostAnswer("q1", "doc1", BODY))
    with pytest.raises(AlreadyAnswered) as caught:
        await service.post_answer(PostAnswer("q1", "doc1", BODY + " Again."))
    assert caught.value.code == "already_answered"
    assert caught.value.details == {"answer_id": first["id"]}
    assert len(store.events) == 1


async def test_an_unknown_question_is_not_found() -> None:
    service, store = await build()
    with pytest.raises(QuestionNotFound, match="can take a moment"):
        await service.post_answer(PostAnswer("q-nope", "doc1", BODY))
    with pytest.raises(QuestionNotFound):
        await service.answers_of("q-nope")
    with pytest.raises(AnswerNotFound):
        await service.get_answer("a-nope")
    assert not store.events


async def test_a_doctor_outside_the_directory_is_refused() -> None:
    service, store = await build()
    with pytest.raises(DoctorNotInDirectory, match="PUT /doctors/stranger"):
        await service.post_answer(PostAnswer("q1", "stranger", BODY))
    assert not store.events


async def test_a_short_answer_is_invalid() -> None:
    service, store = await build()
    with pytest.raises(InvalidAnswer, match="at least"):
        await service.post_answer(PostAnswer("q1", "doc1", "Too short."))
    assert not store.events


async def test_a_repeated_idempotency_key_replays_the_first_answer() -> None:
    service, store = await build()
    first = await service.post_answer(PostAnswer("q1", "doc1", BODY, idempotency_key="k"))
    again = await service.post_answer(PostAnswer("q1", "doc1", BODY, idempotency_key="k"))
    assert again == first and len(store.events) == 1
    with pytest.raises(IdempotencyKeyReused):
        await service.post_answer(PostAnswer("q1", "doc1", BODY + " More.", idempotency_key="k"))


async def test_an_edit_keeps_the_original_as_revision_one_and_only_its_doctor_may_edit() -> None:
    service, store = await build()
    await service.on_doctor_profile_changed(profile("doc2", 1, "Other"))
    answer = await service.post_answer(PostAnswer("q1", "doc1", BODY))
    with pytest.raises(NotYourAnswer):
        await service.edit_answer(EditAnswer(answer["id"], "doc2", BODY + " No."))
    edited = await service.edit_answer(EditAnswer(answer["id"], "doc1", BODY + " Also fillers."))
    again = await service.edit_answer(EditAnswer(answer["id"], "doc1", BODY + " And time."))
    assert edited["revision"] == 2 and again["revision"] == 3 and again["edited_at"]
    listed = (await service.revisions_of(answer["id"]))["items"]
    assert [r["revision"] for r in listed] == [1, 2, 3] and listed[0]["body"] == BODY
    assert [type(e) for e in store.events] == [AnswerPosted, AnswerEdited, AnswerEdited]


async def test_an_edit_keeps_what_it_does_not_name_and_a_none_headline_removes_it() -> None:
    service, _ = await build()
    answer = await service.post_answer(PostAnswer("q1", "doc1", BODY, headline="Botox first"))
    kept = await service.edit_answer(EditAnswer(answer["id"], "doc1", body=BODY + " Also."))
    assert (kept["headline"], kept["body"]) == ("Botox first", BODY + " Also.")
    renamed = await service.edit_answer(EditAnswer(answer["id"], "doc1", headline="Fillers"))
    assert (renamed["headline"], renamed["body"]) == ("Fillers", BODY + " Also.")
    removed = await service.edit_answer(EditAnswer(answer["id"], "doc1", headline=None))
    assert (removed["headline"], removed["body"]) == (None, BODY + " Also.")


async def test_a_hidden_question_takes_no_answers_and_lists_none_until_restored() -> None:
    service, store = await build()
    await service.on_moderation_decided(decided("question", "q1", "hidden", 1))
    with pytest.raises(QuestionNotFound):
        await service.post_answer(PostAnswer("q1", "doc1", BODY))
    with pytest.raises(QuestionNotFound):
        await service.answers_of("q1")
    assert not store.events
    # An older decision arriving late changes nothing; the restore does.
    await service.on_moderation_decided(decided("question", "q1", "restored", 2))
    await service.on_moderation_decided(decided("question", "q1", "hidden", 1))
    answer = await service.post_answer(PostAnswer("q1", "doc1", BODY))
    assert (await service.answers_of("q1"))["items"][0]["id"] == answer["id"]


async def test_a_hidden_answer_or_an_answer_of_a_hidden_question_cannot_be_edited() -> None:
    service, store = await build()
    answer = await service.post_answer(PostAnswer("q1", "doc1", BODY))
    items: tuple[tuple[ItemKind, str], ...] = (("answer", answer["id"]), ("question", "q1"))
    for kind, item_id in items:
        await service.on_moderation_decided(decided(kind, item_id, "hidden", 1))
        with pytest.raises(AnswerNotFound):
            await service.edit_answer(EditAnswer(answer["id"], "doc1", BODY + " Hidden."))
        await service.on_moderation_decided(decided(kind, item_id, "restored", 2))
    assert [type(e) for e in store.events] == [AnswerPosted]
    edited = await service.edit_answer(EditAnswer(answer["id"], "doc1", BODY + " Restored."))
    assert edited["revision"] == 2
