"""The questions service in process (create_app + ASGI) on a real redis-server."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.questions.app import create_app
from shared import streams
from shared.events import AnswerEdited, QuestionPosted
from shared.service import GC_THRESHOLDS
from tests.component.harness import in_process, publish_and_wait
from tests.factories import answer_posted, vote_cast
from tests.support import auth

QUESTION: dict[str, Any] = {
    "title": "Is there an injection that can pull my cheek towards my ear?",
    "body": "My face is asymmetrical and I think it is a muscle imbalance.",
    "topics": ["Facial Asymmetry", "botox"],
    "location": {"city": "Los Angeles", "state": "CA"},
}


@pytest.fixture
async def questions(redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    async with in_process(create_app, redis_url, rate_limit_writes=3) as pair:
        yield pair


async def test_a_question_is_created_once_and_announced_coarsely(
    questions: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, app = questions
    redis = app.state.runtime.redis
    headers = {**auth("pat", "patient", "Pat"), "Idempotency-Key": "k"}
    first = await http.post("/questions", json=QUESTION, headers=headers)
    assert first.status_code == 201
    body = first.json()
    assert body["topics"] == ["facial-asymmetry", "botox"]
    assert "plastic-surgery" in body["specialties"]
    again = await http.post("/questions", json=QUESTION, headers=headers)
    assert again.status_code == 201 and again.json() == body
    reused = await http.post("/questions", json={**QUESTION, "body": "Other."}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    entries = await redis.xrange(streams.QUESTION_POSTED)
    [event] = [QuestionPosted.model_validate_json(fields["__data__"]) for _, fields in entries]
    assert event.question_id == body["id"] and event.location is not None
    assert round(event.location.lat, 2) == pytest.approx(event.location.lat, abs=0.01)
    page = await http.get(f"/questions/{body['id']}")
    assert page.status_code == 200 and page.json()["answer_count"] == 0
    listed = await http.get("/questions", params={"topic": "botox"})
    assert [q["id"] for q in listed.json()["items"]] == [body["id"]]


async def test_the_page_follows_answers_and_votes(
    questions: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, app = questions
    redis = app.state.runtime.redis
    qid = (await http.post("/questions", json=QUESTION, headers=auth("pat"))).json()["id"]
    for aid, minute in (("a1", 1), ("a2", 2)):
        await publish_and_wait(redis, answer_posted(qid, aid, f"doc-{aid}", minute), "questions")
    await publish_and_wait(redis, vote_cast(qid, "a2", "doc-a2", 3, 0, 3), "questions")
    page = (await http.get(f"/questions/{qid}")).json()
    assert [a["id"] for a in page["answers"]] == ["a2", "a1"]
    assert page["answer_count"] == 2 and page["status"] == "answered"


async def test_the_page_carries_an_etag_and_a_repeat_gets_304_until_it_changes(
    questions: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, app = questions
    redis = app.state.runtime.redis
    asker = auth("pat-etag")
    qid = (await http.post("/questions", json=QUESTION, headers=asker)).json()["id"]
    url = f"/questions/{qid}"

    async def etag_now(previous: str | None) -> str:
        """The page's ETag, checking the 200 and its 304 repeat; a new one if `previous`."""
        page = await http.get(url)
        assert page.status_code == 200 and page.headers["cache-control"] == "public, no-cache"
        etag = page.headers["etag"]
        assert etag != previous
        repeat = await http.get(url, headers={"If-None-Match": etag})
        assert repeat.status_code == 304 and repeat.content == b""
        assert repeat.headers["etag"] == etag
        other = await http.get(url, headers={"If-None-Match": '"other", W/' + etag})
        assert other.status_code == 304
        stale = await http.get(url, headers={"If-None-Match": '"not-this-one"'})
        assert stale.status_code == 200 and stale.json() == page.json()
        return etag

    first = await etag_now(None)
    assert await etag_now(None) == first  # unchanged page, same tag
    edited = await http.patch(url, json={"body": "It is worse in the morning."}, headers=asker)
    assert edited.status_code == 200
    after_edit = await etag_now(first)
    assert (await http.get(url)).json()["body"] == "It is worse in the morning."
    await publish_and_wait(redis, answer_posted(qid, "a1", "doc-a1", 1), "questions")
    after_answer = await etag_now(after_edit)
    assert [a["id"] for a in (await http.get(url)).json()["answers"]] == ["a1"]
    await publish_and_wait(redis, vote_cast(qid, "a1", "doc-a1", 4, 0, 4), "questions")
    after_vote = await etag_now(after_answer)
    assert (await http.get(url)).json()["answers"][0]["helpful"] == 4
    edit = AnswerEdited(
        correlation_id="c",
        producer="answers",
        answer_id="a1",
        question_id=qid,
        doctor_id="doc-a1",
        body="Edited answer.",
        revision=2,
        edited_at=datetime.now(UTC),
    )
    await publish_and_wait(redis, edit, "questions")
    after_answer_edit = await etag_now(after_vote)
    assert (await http.get(url)).json()["answers"][0]["body"] == "Edited answer."
    accepted = await http.put(f"{url}/accepted-answer", json={"answer_id": "a1"}, headers=asker)
    assert accepted.status_code == 200
    await etag_now(after_answer_edit)
    assert (await http.get(url)).json()["answers"][0]["accepted"] is True
    missing = await http.get("/questions/q-none", headers={"If-None-Match": "*"})
    assert missing.status_code == 404


async def test_anonymous_page_reads_count_in_the_page_read(redis_url: str) -> None:
    async with in_process(create_app, redis_url, anon_read_limit=3) as (http, _):
        qid = (await http.post("/questions", json=QUESTION, headers=auth("pat-rl"))).json()["id"]
        statuses = [(await http.get(f"/questions/{qid}")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        refused = await http.get(f"/questions/{qid}")
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        signed_in = await http.get(f"/questions/{qid}", headers=auth("reader"))
        assert signed_in.status_code == 200  # signed-in reads are not counted


async def test_refusals_map_to_their_statuses(
    questions: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, _ = questions
    patient = auth("pat2")
    unknown = await http.post(
        "/questions", json={**QUESTION, "topics": ["astrology"]}, headers=patient
    )
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_topics"
    nowhere = await http.post(
        "/questions",
        json={**QUESTION, "location": {"city": "Atlantis", "state": "ZZ"}},
        headers=patient,
    )
    assert nowhere.status_code == 422 and nowhere.json()["error"]["code"] == "unknown_place"
    blank = await http.post(
        "/questions", json={**QUESTION, "title": "\x00" * 12, "body": "x"}, headers=patient
    )
    assert blank.status_code == 422
    cursor = await http.get("/questions", params={"cursor": "not-ours"})
    assert cursor.status_code == 400 and cursor.json()["error"]["code"] == "bad_cursor"
    missing = await http.get("/questions/q-nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert (await http.get("/questions/q-nope/related")).status_code == 404
    doctor = await http.post("/questions", json=QUESTION, headers=auth("doc", "doctor"))
    assert doctor.status_code == 403


async def test_writes_past_the_limit_get_429_but_an_admins_do_not(
    questions: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, _ = questions
    replies = [await http.post("/questions", json=QUESTION, headers=auth("busy")) for _ in range(4)]
    assert [r.status_code for r in replies] == [201, 201, 201, 429]
    assert int(replies[-1].headers["retry-after"]) >= 1
    assert replies[-1].json()["error"]["code"] == "rate_limited"
    admin = [
        (await http.post("/questions", json=QUESTION, headers=auth("root", "admin"))).status_code
        for _ in range(4)
    ]
    assert admin == [201] * 4


async def test_the_taxonomy_is_served(questions: tuple[httpx.AsyncClient, FastAPI]) -> None:
    http, _ = questions
    data = (await http.get("/taxonomy")).json()
    assert {"slug": "dermatology", "name": "Dermatology", "nucc_code": "207N00000X"} in data[
        "specialties"
    ]


async def test_a_question_edit_changes_only_the_fields_it_sends(redis_url: str) -> None:
    async with in_process(create_app, redis_url) as (http, _):
        await edit_only_what_is_sent(http)


async def edit_only_what_is_sent(http: httpx.AsyncClient) -> None:
    asker = auth("pat-patch")
    created = await http.post("/questions", json=QUESTION, headers=asker)
    url = f"/questions/{created.json()['id']}"
    title = await http.patch(
        url, json={"title": "An injection to pull my cheek back?"}, headers=asker
    )
    assert title.status_code == 200, title.text
    assert title.json()["body"] == QUESTION["body"]
    body = await http.patch(url, json={"body": "It is worse in the morning."}, headers=asker)
    assert body.json()["title"] == "An injection to pull my cheek back?"
    # Neither can be removed, and an edit must change something.
    for refused in ({"title": None}, {"body": None}, {}):
        reply = await http.patch(url, json=refused, headers=asker)
        assert reply.status_code == 422, (refused, reply.text)
    page = (await http.get(url)).json()
    assert (page["title"], page["body"], page["revision"]) == (
        "An injection to pull my cheek back?",
        "It is worse in the morning.",
        3,
    )


async def test_questions_indexed_one_key_per_listing_are_listed_after_a_restart(
    redis_url: str,
) -> None:
    # A question posted before the one index (its member in a key per listing), then the
    # service started: its start moves them, and the listings show the question.
    async with in_process(create_app, redis_url) as (http, app):
        posted = await http.post("/questions", json=QUESTION, headers=auth("pat", "patient"))
        assert posted.status_code == 201
        question = posted.json()
        redis, tag = app.state.runtime.redis, app.state.runtime.tag
        [entry] = await redis.zrange(f"{tag}:idx", "[topic:botox:", "(topic:botox;", bylex=True)
        member = entry.removeprefix("topic:botox:")
        await redis.delete(f"{tag}:idx")
        listings = ["all", "topic:botox", "topic:facial-asymmetry"]
        for listing in listings + [f"specialty:{s}" for s in question["specialties"]]:
            await redis.zadd(f"{tag}:idx:{listing}", {member: 0})
    async with in_process(create_app, redis_url) as (http, app):
        for params in ({}, {"topic": "botox"}, {"specialty": question["specialties"][-1]}):
            listed = await http.get("/questions", params=params)
            assert [q["id"] for q in listed.json()["items"]] == [question["id"]]
        assert await app.state.runtime.redis.keys(f"{app.state.runtime.tag}:idx:*") == []


async def test_a_ready_service_collects_young_garbage_less_often(redis_url: str) -> None:
    gc.set_threshold(700, 10, 10)
    try:
        async with in_process(create_app, redis_url):
            assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.set_threshold(700, 10, 10)


async def test_the_listing_counts_each_questions_answers_as_its_page_does(
    questions: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, app = questions
    redis = app.state.runtime.redis
    answered = (await http.post("/questions", json=QUESTION, headers=auth("pat"))).json()["id"]
    unanswered = (await http.post("/questions", json=QUESTION, headers=auth("sam"))).json()["id"]
    for aid, minute in (("a1", 1), ("a2", 2)):
        await publish_and_wait(
            redis, answer_posted(answered, aid, f"doc-{aid}", minute), "questions"
        )
    listed = (await http.get("/questions")).json()["items"]
    assert {q["id"]: q["answer_count"] for q in listed} == {answered: 2, unanswered: 0}

    hide = await http.put(
        f"/moderation/questions/{answered}/answers/a1",
        json={"decision": "hidden"},
        headers=auth("ada", "admin"),
    )
    assert hide.status_code == 200, hide.text
    for _ in range(200):
        if (await http.get(f"/questions/{answered}")).json()["answer_count"] == 1:
            break
        await asyncio.sleep(0.05)
    listed = (await http.get("/questions")).json()["items"]
    assert {q["id"]: q["answer_count"] for q in listed} == {answered: 1, unanswered: 0}
