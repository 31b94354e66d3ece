"""The votes service layer against a hand-written fake store (no Redis, no HTTP)."""

from __future__ import annotations

import pytest

from services.votes.service import AnswerNotFound, CastVote, OwnAnswer, VotesService
from shared.errors import RateLimited
from shared.ratelimit import WriteLimit
from tests.factories import answer_posted
from tests.factories import moderation_decided as decided
from tests.unit.fakes import FakeVoteStore


async def build() -> tuple[VotesService, FakeVoteStore]:
    store = FakeVoteStore()
    service = VotesService(store)
    await service.on_answer_posted(answer_posted("q1", "a1", "doc1"))
    return service, store


async def test_a_vote_moves_the_tally_and_is_announced() -> None:
    service, store = await build()
    tally = await service.cast_vote(CastVote("a1", "reader", 1))
    assert tally == {"answer_id": "a1", "helpful": 1, "unhelpful": 0, "your_vote": 1}
    [event] = store.events
    assert (event.question_id, event.doctor_id, event.voter_id) == ("q1", "doc1", "reader")
    assert (event.helpful, event.previous_value, event.tally_version) == (1, 0, 1)


async def test_changing_and_retracting_a_vote() -> None:
    service, store = await build()
    await service.cast_vote(CastVote("a1", "reader", 1))
    changed = await service.cast_vote(CastVote("a1", "reader", -1))
    assert (changed["helpful"], changed["unhelpful"]) == (0, 1)
    retracted = await service.cast_vote(CastVote("a1", "reader", 0))
    assert (retracted["helpful"], retracted["unhelpful"], retracted["your_vote"]) == (0, 0, 0)
    assert [e.tally_version for e in store.events] == [1, 2, 3]


async def test_repeating_a_vote_changes_and_publishes_nothing() -> None:
    service, store = await build()
    await service.cast_vote(CastVote("a1", "reader", 1))
    again = await service.cast_vote(CastVote("a1", "reader", 1))
    assert again["helpful"] == 1 and len(store.events) == 1


async def test_no_vote_on_ones_own_answer() -> None:
    service, store = await build()
    with pytest.raises(OwnAnswer) as caught:
        await service.cast_vote(CastVote("a1", "doc1", 1))
    assert caught.value.code == "own_answer"
    assert not store.events


async def test_an_unknown_answer_is_not_found() -> None:
    service, store = await build()
    with pytest.raises(AnswerNotFound, match="can take a moment"):
        await service.cast_vote(CastVote("a-nope", "reader", 1))
    with pytest.raises(AnswerNotFound):
        await service.tally("a-nope", None)
    assert not store.events


async def test_the_tally_shows_the_callers_own_vote_only_when_signed_in() -> None:
    service, _ = await build()
    await service.cast_vote(CastVote("a1", "reader", -1))
    assert (await service.tally("a1", "reader"))["your_vote"] == -1
    assert (await service.tally("a1", "other"))["your_vote"] == 0
    assert (await service.tally("a1", None))["your_vote"] is None


async def test_a_hidden_answer_or_question_takes_no_vote_until_restored() -> None:
    service, store = await build()
    await service.cast_vote(CastVote("a1", "reader", 1))
    await service.on_moderation_decided(decided("answer", "a1", "hidden", 1))
    for value in (1, -1, 0):
        with pytest.raises(AnswerNotFound):
            await service.cast_vote(CastVote("a1", "other", value))
    with pytest.raises(AnswerNotFound):
        await service.tally("a1", "reader")
    # A late, older decision changes nothing; the restore brings the tally back as it was.
    await service.on_moderation_decided(decided("answer", "a1", "restored", 2))
    await service.on_moderation_decided(decided("answer", "a1", "hidden", 1))
    assert (await service.tally("a1", "reader"))["helpful"] == 1
    # Hiding the question hides its answers' votes too.
    await service.on_moderation_decided(decided("question", "q1", "hidden", 1))
    with pytest.raises(AnswerNotFound):
        await service.cast_vote(CastVote("a1", "other", 1))
    await service.on_moderation_decided(decided("question", "q1", "restored", 2))
    tally = await service.cast_vote(CastVote("a1", "other", 1))
    assert tally["helpful"] == 2
    assert [e.tally_version for e in store.events] == [1, 2]


async def test_a_voter_over_the_write_limit_is_refused_and_nothing_moves() -> None:
    store = FakeVoteStore()
    service = VotesService(store, WriteLimit("t", writes=2, window_s=60))
    await service.on_answer_posted(answer_posted("q1", "a1", "doc1"))
    await service.cast_vote(CastVote("a1", "reader", 1))
    await service.cast_vote(CastVote("a1", "reader", -1))
    with pytest.raises(RateLimited) as caught:
        await service.cast_vote(CastVote("a1", "reader", 1))
    assert caught.value.retry_after_s >= 1
    assert (await service.tally("a1", "reader"))["your_vote"] == -1
    assert len(store.events) == 2
    for value in (1, -1, 1):  # an admin's votes are not counted
        await service.cast_vote(CastVote("a1", "root", value, voter_role="admin"))
