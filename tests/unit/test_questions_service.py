"""The questions service layer against a hand-written fake store (no Redis, no HTTP)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from services.questions.service import (
    AnswerNotOnPage,
    BadCursor,
    BlankQuestion,
    PostQuestion,
    QuestionNotFound,
    QuestionsService,
    UnknownLocation,
    etag_matches,
)
from shared.errors import RateLimited
from shared.events import QuestionPosted
from shared.geo import PlaceQuery
from shared.idempotency import IdempotencyKeyReused
from shared.ratelimit import ReadCount, WriteLimit
from shared.settings import Settings
from shared.taxonomy import UnknownSlugs
from tests.factories import answer_posted, vote_cast
from tests.support import JWT_SECRET
from tests.unit.fakes import FakeQuestionStore

TITLE = "Is there an injection that can pull my cheek towards my ear?"


def build(writes: int = 100) -> tuple[QuestionsService, FakeQuestionStore]:
    store = FakeQuestionStore()
    settings = Settings(jwt_secret=JWT_SECRET)
    return QuestionsService(store, settings, WriteLimit(store.tag, writes, 60)), store


def ask(**fields: object) -> PostQuestion:
    command = {
        "asker_id": "pat",
        "asker_name": "Pat",
        "asker_role": "patient",
        "title": TITLE,
        "body": "My face is asymmetrical.",
        "topics": ("Facial Asymmetry", "botox"),
        **fields,
    }
    return PostQuestion(**command)  # type: ignore[arg-type]


async def test_a_question_is_stored_routed_and_announced_once() -> None:
    service, store = build()
    reply = await service.post_question(ask(specialties=("Neurology",)))
    assert reply["topics"] == ["facial-asymmetry", "botox"]
    assert reply["specialties"][0] == "neurology"
    assert "plastic-surgery" in reply["specialties"]
    assert reply["asker"] == {"id": "pat", "name": "Pat"}
    [event] = store.events
    assert isinstance(event, QuestionPosted)
    assert event.question_id == reply["id"] and event.specialties == reply["specialties"]
    assert store.questions[reply["id"]]["asker_role"] == "patient"


async def test_an_anonymous_asker_is_hidden_from_the_reply() -> None:
    service, _ = build()
    reply = await service.post_question(ask(anonymous=True))
    assert reply["asker"] is None and "pat" not in str(reply)


async def test_the_page_tells_only_its_asker_that_the_question_is_theirs() -> None:
    service, _ = build()
    qid = (await service.post_question(ask(anonymous=True)))["id"]
    assert (await service.page(qid, "pat"))["yours"] is True
    other = await service.page(qid, "reader")
    assert other["yours"] is False and other["asker"] is None and "'pat'" not in str(other)
    assert "yours" not in await service.page(qid)


async def test_unknown_topics_are_refused_and_nothing_is_stored() -> None:
    service, store = build()
    with pytest.raises(UnknownSlugs, match="unknown topics: Astrology") as caught:
        await service.post_question(ask(topics=("Astrology", "botox")))
    assert caught.value.code == "unknown_topics"
    with pytest.raises(UnknownSlugs) as caught:
        await service.post_question(ask(specialties=("wizardry",)))
    assert caught.value.code == "unknown_specialties"
    assert not store.questions and not store.events


async def test_a_blank_title_after_cleaning_is_refused() -> None:
    service, store = build()
    with pytest.raises(BlankQuestion):
        await service.post_question(ask(title="\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b"))
    assert not store.events


async def test_an_unknown_place_is_refused() -> None:
    service, store = build()
    with pytest.raises(UnknownLocation) as caught:
        await service.post_question(ask(location=PlaceQuery(city="Atlantis", state="ZZ")))
    assert caught.value.code == "unknown_place"
    assert not store.events


async def test_a_place_is_kept_coarse() -> None:
    service, _ = build()
    reply = await service.post_question(ask(location=PlaceQuery(zip="90012")))
    assert reply["location"]["state"] == "CA"
    lat = reply["location"]["lat"]
    assert round(lat, 2) == lat


async def test_coordinates_are_coarsened_and_named_after_the_nearest_city() -> None:
    service, store = build()
    point = PlaceQuery(lat=34.052231, lon=-118.243683)
    reply = await service.post_question(ask(location=point))
    assert reply["location"] == {
        "city": "Los Angeles",
        "state": "CA",
        "zip": None,
        "lat": 34.05,
        "lon": -118.24,
    }
    (event,) = store.events
    assert isinstance(event, QuestionPosted) and event.location is not None
    assert (event.location.lat, event.location.lon) == (34.05, -118.24)
    assert event.location.city == "Los Angeles"
    page = await service.page(reply["id"])
    assert page["location"]["lat"] == 34.05


async def test_a_repeated_idempotency_key_replays_the_first_reply() -> None:
    service, store = build()
    first = await service.post_question(ask(idempotency_key="k1"))
    again = await service.post_question(ask(idempotency_key="k1"))
    assert again == first
    assert len(store.events) == 1
    with pytest.raises(IdempotencyKeyReused):
        await service.post_question(ask(idempotency_key="k1", body="Something else entirely."))
    assert len(store.events) == 1


async def test_writes_past_the_limit_are_refused_but_not_an_admins() -> None:
    service, store = build(writes=2)
    await service.post_question(ask())
    await service.post_question(ask())
    with pytest.raises(RateLimited) as caught:
        await service.post_question(ask())
    assert caught.value.retry_after_s == 60
    assert len(store.events) == 2
    for _ in range(3):
        await service.post_question(ask(asker_id="root", asker_role="admin"))
    assert len(store.events) == 5


async def test_the_page_ranks_answers_by_votes_and_counts_them() -> None:
    service, _ = build()
    qid = (await service.post_question(ask()))["id"]
    await service.on_answer_posted(answer_posted(qid, "a1", "doc-a1", minute=1))
    await service.on_answer_posted(answer_posted(qid, "a2", "doc-a2", minute=2))
    await service.on_vote_cast(vote_cast(qid, "a2", "doc-a2", 40, 5, 2))
    await service.on_vote_cast(
        vote_cast(qid, "a2", "doc-a2", 1, 0, 1)
    )  # an older tally arrives late
    await service.on_vote_cast(vote_cast(qid, "a1", "doc-a1", 1, 0, 1))
    page = await service.page(qid)
    assert [a["id"] for a in page["answers"]] == ["a2", "a1"]
    assert (page["answers"][0]["helpful"], page["answers"][0]["unhelpful"]) == (40, 5)
    assert page["answer_count"] == 2 and page["status"] == "answered"
    assert page["disclaimer"]


async def test_the_page_view_is_built_once_per_version_and_answers_304_to_its_tag() -> None:
    service, store = build()
    qid = (await service.post_question(ask()))["id"]
    first = await service.page_view(qid, None, None)
    assert first.body is not None and json.loads(first.body) == await service.page(qid)
    again = await service.page_view(qid, None, None)
    assert again == first and store.built_pages[qid][1] == first.etag
    assert (await service.page_view(qid, first.etag, None)).body is None
    assert (await service.page_view(qid, f'"x", W/{first.etag}', None)).body is None
    assert (await service.page_view(qid, "*", None)).body is None
    assert (await service.page_view(qid, '"x"', None)).body == first.body
    await service.on_answer_posted(answer_posted(qid, "a1", "doc-a1", minute=1))
    changed = await service.page_view(qid, first.etag, None)
    assert changed.etag != first.etag and changed.body is not None
    assert json.loads(changed.body)["answer_count"] == 1
    await service.on_vote_cast(vote_cast(qid, "a1", "doc-a1", 3, 0, 1))
    voted = await service.page_view(qid, changed.etag, None)
    assert voted.body is not None and json.loads(voted.body)["answers"][0]["helpful"] == 3


async def test_an_anonymous_page_read_past_its_limit_is_refused() -> None:
    service, _ = build()
    qid = (await service.post_question(ask()))["id"]
    read = ReadCount("rl-read:1.2.3.4", 2, 60)
    for _ in range(2):
        assert (await service.page_view(qid, None, read)).body is not None
    with pytest.raises(RateLimited):
        await service.page_view(qid, None, read)
    assert (await service.page_view(qid, None, None)).body is not None  # signed in


def test_if_none_match_compares_tags_weakly() -> None:
    assert etag_matches('"a"', '"a"') and etag_matches('W/"a"', '"a"')
    assert etag_matches(' "b" , "a" ', '"a"') and etag_matches("*", '"a"')
    assert not etag_matches('"b"', '"a"') and not etag_matches('"a', '"a"')


async def test_unknown_questions_are_not_found() -> None:
    service, _ = build()
    with pytest.raises(QuestionNotFound):
        await service.page("q-nope")
    with pytest.raises(QuestionNotFound):
        await service.related("q-nope", 5)


async def posted_apart(service: QuestionsService, command: PostQuestion) -> dict[str, Any]:
    # Ids order by creation millisecond; questions in one millisecond have no order.
    await asyncio.sleep(0.003)
    return await service.post_question(command)


async def test_listing_pages_newest_first_and_filters() -> None:
    service, _ = build()
    ids = [(await posted_apart(service, ask()))["id"] for _ in range(3)]
    other = await posted_apart(service, ask(topics=("acne",)))
    first = await service.list_questions(None, None, 2, None)
    assert [q["id"] for q in first["items"]] == [other["id"], ids[2]]
    rest = await service.list_questions(None, None, 2, first["next_cursor"])
    assert [q["id"] for q in rest["items"]] == [ids[1], ids[0]]
    acne = await service.list_questions("Acne", None, 10, None)
    assert [q["id"] for q in acne["items"]] == [other["id"]]
    both = await service.list_questions("botox", "dermatology", 10, None)
    assert {q["id"] for q in both["items"]} == set(ids)


async def test_a_foreign_cursor_is_refused() -> None:
    service, _ = build()
    with pytest.raises(BadCursor):
        await service.list_questions(None, None, 5, "not-a-cursor")


async def test_related_questions_share_topics_first() -> None:
    service, _ = build()
    mine = await service.post_question(ask(topics=("botox", "fillers")))
    close = await service.post_question(
        ask(topics=("botox", "fillers"), title="Fillers and botox for my cheek?")
    )
    far = await service.post_question(
        ask(topics=("botox",), title="How long does it last, honestly?")
    )
    await service.post_question(ask(topics=("acne",)))
    related = await service.related(mine["id"], 5)
    assert [r["id"] for r in related] == [close["id"], far["id"]]
    assert related[0]["score"] > related[1]["score"]


async def test_following_is_idempotent_versioned_and_the_asker_follows_from_the_start() -> None:
    service, store = build()
    qid = (await service.post_question(ask()))["id"]
    page = await service.page(qid, "reader")
    assert page["follower_count"] == 1 and page["following"] is False
    assert (await service.page(qid, "pat"))["following"] is True
    assert "following" not in await service.page(qid)

    followed = await service.set_following(qid, "reader", True)
    assert followed == {"question_id": qid, "following": True, "follower_count": 2}
    assert await service.set_following(qid, "reader", True) == followed  # a repeat: nothing new
    await service.set_following(qid, "reader", False)
    await service.set_following(qid, "pat", False)  # the asker may unfollow too
    await service.set_following(qid, "reader", True)
    changes = [e for e in store.events if not isinstance(e, QuestionPosted)]
    assert [(type(e).__name__, e.user_id, e.follow_version) for e in changes] == [  # type: ignore[attr-defined]
        ("QuestionFollowed", "reader", 1),
        ("QuestionUnfollowed", "reader", 2),
        ("QuestionUnfollowed", "pat", 2),
        ("QuestionFollowed", "reader", 3),
    ]
    assert (await service.page(qid))["follower_count"] == 1
    with pytest.raises(QuestionNotFound):
        await service.set_following("q-none", "reader", True)
    # Hidden by moderators: no new followers, but one may still stop following it.
    store.hidden_items.add(("question", qid))
    with pytest.raises(QuestionNotFound):
        await service.set_following(qid, "another", True)
    assert (await service.set_following(qid, "reader", False))["following"] is False


async def test_the_asker_of_a_question_from_before_following_follows_and_may_unfollow() -> None:
    service, store = build()
    qid = (await service.post_question(ask()))["id"]
    # As an older version stored it: no record of who follows.
    del store.follower_sets[qid], store.follow_versions[qid]
    assert (await service.page(qid, "pat"))["follower_count"] == 1
    assert (await service.page(qid, "pat"))["following"] is True
    assert await service.set_following(qid, "pat", True) == {
        "question_id": qid,
        "following": True,
        "follower_count": 1,
    }
    assert (await service.set_following(qid, "reader", True))["follower_count"] == 2
    assert (await service.set_following(qid, "pat", False))["follower_count"] == 1
    assert (await service.page(qid, "pat"))["following"] is False
    await service.set_following(qid, "pat", True)
    changes = [e for e in store.events if not isinstance(e, QuestionPosted)]
    assert [(type(e).__name__, e.user_id, e.follow_version) for e in changes] == [  # type: ignore[attr-defined]
        ("QuestionFollowed", "reader", 1),
        ("QuestionUnfollowed", "pat", 2),
        ("QuestionFollowed", "pat", 3),
    ]


async def test_a_hidden_question_cannot_be_edited_nor_a_hidden_answer_picked() -> None:
    service, store = build()
    qid = (await service.post_question(ask()))["id"]
    store.hidden_items.add(("question", qid))
    with pytest.raises(QuestionNotFound):
        await service.edit_question(qid, "pat", "A new title for a hidden question", None)
    store.hidden_items.clear()
    await service.on_answer_posted(answer_posted(qid, "a1", "doc-a1", minute=1))
    await service.on_answer_posted(answer_posted(qid, "a2", "doc-a2", minute=2))
    store.hidden_items.add(("answer", "a1"))
    with pytest.raises(AnswerNotOnPage):
        await service.accept_answer(qid, "pat", "a1")
    page = await service.accept_answer(qid, "pat", "a2")
    assert [a["id"] for a in page["answers"] if a["accepted"]] == ["a2"]
    store.hidden_items.add(("question", qid))
    with pytest.raises(QuestionNotFound):
        await service.accept_answer(qid, "pat", "a2")
