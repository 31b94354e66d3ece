"""The answers service in process (create_app + ASGI) on a real redis-server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from services.answers.app import create_app
from shared import streams
from shared.events import AnswerEdited, AnswerPosted
from shared.redis import RedisClient
from tests.component.harness import in_process, publish_and_wait
from tests.factories import ANSWER_BODY as BODY
from tests.factories import doctor_profile_changed, question_posted
from tests.support import auth


@pytest.fixture
async def answers(redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    async with in_process(create_app, redis_url) as pair:
        yield pair


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def a_question(redis: RedisClient) -> str:
    qid = uid("q")
    event = question_posted(qid)
    await publish_and_wait(redis, event, "answers")
    return qid


async def a_doctor(redis: RedisClient) -> str:
    doctor_id = uid("doc")
    event = doctor_profile_changed(doctor_id)
    await publish_and_wait(redis, event, "answers")
    return doctor_id


async def test_an_answer_is_created_once_replayed_and_announced(
    answers: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, app = answers
    redis = app.state.runtime.redis
    qid, doctor_id = await a_question(redis), await a_doctor(redis)
    headers = {**auth(doctor_id, "doctor"), "Idempotency-Key": "once"}
    first = await http.post(f"/questions/{qid}/answers", json={"body": BODY}, headers=headers)
    assert first.status_code == 201
    assert first.json()["doctor"]["name"] == "Jon A. Perlman"
    again = await http.post(f"/questions/{qid}/answers", json={"body": BODY}, headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    reused = await http.post(
        f"/questions/{qid}/answers", json={"body": BODY + " Also."}, headers=headers
    )
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    entries = await redis.xrange(streams.ANSWER_POSTED)
    events = [AnswerPosted.model_validate_json(fields["__data__"]) for _, fields in entries]
    assert [e.answer_id for e in events] == [first.json()["id"]]
    listing = (await http.get(f"/questions/{qid}/answers")).json()
    assert listing["answer_count"] == 1
    one = await http.get(f"/answers/{first.json()['id']}")
    assert one.status_code == 200 and one.json() == first.json()


async def test_refusals_map_to_their_statuses(answers: tuple[httpx.AsyncClient, FastAPI]) -> None:
    http, app = answers
    redis = app.state.runtime.redis
    qid, doctor_id = await a_question(redis), await a_doctor(redis)
    doctor = auth(doctor_id, "doctor")
    first = await http.post(f"/questions/{qid}/answers", json={"body": BODY}, headers=doctor)
    assert first.status_code == 201
    twice = await http.post(f"/questions/{qid}/answers", json={"body": BODY}, headers=doctor)
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "already_answered"
    assert twice.json()["error"]["answer_id"] == first.json()["id"]
    stranger = await http.post(
        f"/questions/{qid}/answers", json={"body": BODY}, headers=auth("stranger", "doctor")
    )
    assert stranger.status_code == 403
    assert stranger.json()["error"]["code"] == "doctor_not_in_directory"
    nowhere = await http.post("/questions/q-nope/answers", json={"body": BODY}, headers=doctor)
    assert nowhere.status_code == 404 and nowhere.json()["error"]["code"] == "not_found"
    short = await http.post(
        f"/questions/{qid}/answers", json={"body": "\x00" * 30 + "short"}, headers=doctor
    )
    assert short.status_code == 422 and short.json()["error"]["code"] == "invalid_request"
    patient = await http.post(f"/questions/{qid}/answers", json={"body": BODY}, headers=auth("pat"))
    assert patient.status_code == 403
    assert (await http.get("/questions/q-nope/answers")).status_code == 404
    assert (await http.get("/answers/a-nope")).status_code == 404


async def test_an_edit_changes_only_the_fields_it_sends(
    answers: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, app = answers
    redis = app.state.runtime.redis
    qid, doctor_id = await a_question(redis), await a_doctor(redis)
    doctor = auth(doctor_id, "doctor")
    posted = await http.post(
        f"/questions/{qid}/answers", json={"headline": "Botox first", "body": BODY}, headers=doctor
    )
    url = f"/answers/{posted.json()['id']}"

    async def patch(body: dict[str, object]) -> httpx.Response:
        return await http.patch(url, json=body, headers=doctor)

    # A body alone keeps the headline; a headline alone keeps the body.
    body_only = await patch({"body": BODY + " Then fillers."})
    assert body_only.status_code == 200, body_only.text
    assert body_only.json()["headline"] == "Botox first"
    headline_only = await patch({"headline": "Botox, then fillers"})
    assert headline_only.status_code == 200, headline_only.text
    assert headline_only.json()["body"] == BODY + " Then fillers."
    # An explicit null removes the headline (it may be absent); never the body.
    cleared = await patch({"headline": None})
    assert cleared.status_code == 200 and cleared.json()["headline"] is None
    assert cleared.json()["body"] == BODY + " Then fillers."
    for refused in ({"body": None}, {}, {"headline": "x", "body": None}):
        reply = await patch(refused)
        assert reply.status_code == 422, (refused, reply.text)
        assert reply.json()["error"]["code"] == "invalid_request"
    stored = (await http.get(url)).json()
    assert (stored["headline"], stored["body"], stored["revision"]) == (
        None,
        BODY + " Then fillers.",
        4,
    )
    listed = (await http.get(f"{url}/revisions")).json()["items"]
    assert [(r["revision"], r["headline"]) for r in listed] == [
        (1, "Botox first"),
        (2, "Botox first"),
        (3, "Botox, then fillers"),
        (4, None),
    ]
    # Each event carries the whole text after the edit, so readers need no merge.
    entries = await redis.xrange(streams.ANSWER_EDITED)
    events = [AnswerEdited.model_validate_json(f["__data__"]) for _, f in entries]
    mine = [(e.revision, e.headline) for e in events if e.answer_id == stored["id"]]
    assert mine == [(2, "Botox first"), (3, "Botox, then fillers"), (4, None)]


async def test_an_answer_refused_by_its_rules_costs_no_write_budget(redis_url: str) -> None:
    async with in_process(create_app, redis_url, rate_limit_writes=1) as (http, app):
        redis = app.state.runtime.redis
        qid, doctor_id = await a_question(redis), await a_doctor(redis)
        doctor = auth(doctor_id, "doctor")
        # Refused by the service's own rules after the route's validation (blank once
        # cleaned), and by the body's schema: neither spends the doctor's one write.
        for body in ({"body": "\x00" * 30 + "short"}, {"body": BODY, "extra": 1}):
            refused = await http.post(f"/questions/{qid}/answers", json=body, headers=doctor)
            assert refused.status_code == 422, refused.text
        posted = await http.post(f"/questions/{qid}/answers", json={"body": BODY}, headers=doctor)
        assert posted.status_code == 201, posted.text
        other = await a_question(redis)
        over = await http.post(f"/questions/{other}/answers", json={"body": BODY}, headers=doctor)
        assert over.status_code == 429
