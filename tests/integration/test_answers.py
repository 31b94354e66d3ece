"""The answers service as a real process on a real Redis: posting rules, idempotency,
and its projections of questions and doctors, fed by real events on the streams."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from shared import streams
from shared.events import AnswerPosted, Event, QuestionPosted
from shared.redis import RedisClient
from tests.factories import ANSWER_BODY, doctor_profile_changed, question_posted
from tests.support import RedisServer, ServiceProcess, auth, service_on_own_redis, wait_for


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[RedisServer, ServiceProcess]]:
    with service_on_own_redis("answers") as pair:
        yield pair


@pytest.fixture
def r(stack: tuple[RedisServer, ServiceProcess]) -> RedisClient:
    return stack[0].client()


@pytest.fixture
async def http(stack: tuple[RedisServer, ServiceProcess]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack[1].url, timeout=10) as client:
        yield client


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def publish(r: RedisClient, event: Event) -> str:
    """XADD an event as its producer would, and wait until the answers group has acked it."""
    entry_id = str(r.xadd(event.stream, event.to_wire()))

    def acked() -> bool:
        groups = {g["name"]: g for g in r.xinfo_groups(event.stream)}
        group = groups.get("answers")
        if group is None:
            return False
        delivered = tuple(map(int, group["last-delivered-id"].split("-")))
        pending = r.xpending_range(event.stream, "answers", entry_id, entry_id, 1)
        return delivered >= tuple(map(int, entry_id.split("-"))) and not pending

    wait_for(acked, 10, what=f"answers to handle {event.event_type}")
    return entry_id


def question(r: RedisClient) -> str:
    qid = uid("q")
    publish(r, question_posted(qid, asker_id=uid("patient")))
    return qid


def doctor(r: RedisClient, version: int = 1) -> str:
    doctor_id = uid("doc")
    publish(r, doctor_profile_changed(doctor_id, version))
    return doctor_id


def posted_events(r: RedisClient, question_id: str) -> list[AnswerPosted]:
    """The answer-posted entries of one question, read with plain redis-py."""
    events = [
        AnswerPosted.model_validate_json(fields["__data__"])
        for _, fields in r.xrange(streams.ANSWER_POSTED)
    ]
    return [e for e in events if e.question_id == question_id]


async def answer(http: httpx.AsyncClient, qid: str, doctor_id: str, **body: Any) -> httpx.Response:
    return await http.post(
        f"/questions/{qid}/answers",
        json={"body": ANSWER_BODY, **body},
        headers=auth(doctor_id, "doctor", "Dr Test"),
    )


async def test_a_doctor_answers_with_their_card_and_the_event_lands(
    r: RedisClient, http: httpx.AsyncClient
) -> None:
    qid, doctor_id = question(r), doctor(r)
    resp = await answer(http, qid, doctor_id, headline="Botox can help")
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["question_id"] == qid
    assert created["headline"] == "Botox can help"
    assert created["body"] == ANSWER_BODY
    assert created["created_at"]
    assert created["doctor"] == {
        "id": doctor_id,
        "name": "Jon A. Perlman",
        "credentials": "MD, FACS",
        "specialty": "plastic-surgery",
        "city": "Beverly Hills",
        "state": "CA",
        "rating": 4.9,
        "review_count": 187,
        "verified": True,
    }
    assert (await http.get(f"/answers/{created['id']}")).json() == created
    listing = (await http.get(f"/questions/{qid}/answers")).json()
    assert listing == {"question_id": qid, "items": [created], "answer_count": 1}
    [event] = posted_events(r, qid)
    assert event.answer_id == created["id"]
    assert event.producer == "answers"
    assert event.doctor.model_dump() == created["doctor"]
    assert event.body == ANSWER_BODY


async def test_answers_are_listed_oldest_first(r: RedisClient, http: httpx.AsyncClient) -> None:
    qid = question(r)
    ids = []
    for _ in range(3):
        resp = await answer(http, qid, doctor(r))
        assert resp.status_code == 201
        ids.append(resp.json()["id"])
    listing = (await http.get(f"/questions/{qid}/answers")).json()
    assert [a["id"] for a in listing["items"]] == ids
    assert listing["answer_count"] == 3


async def test_an_unknown_question_is_404(r: RedisClient, http: httpx.AsyncClient) -> None:
    resp = await answer(http, "q-nope", doctor(r))
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"
    assert "q-nope" in resp.json()["error"]["message"]
    assert (await http.get("/questions/q-nope/answers")).status_code == 404
    assert (await http.get("/answers/a-nope")).status_code == 404


async def test_only_signed_in_doctors_answer(r: RedisClient, http: httpx.AsyncClient) -> None:
    qid = question(r)
    anonymous = await http.post(f"/questions/{qid}/answers", json={"body": ANSWER_BODY})
    assert anonymous.status_code == 401
    patient = await http.post(
        f"/questions/{qid}/answers", json={"body": ANSWER_BODY}, headers=auth(uid("p"), "patient")
    )
    assert patient.status_code == 403
    assert patient.json()["error"]["code"] == "forbidden"
    assert posted_events(r, qid) == []


@pytest.mark.parametrize("status", ["pending", "suspended", None])
async def test_only_a_verified_doctor_may_answer(
    r: RedisClient, http: httpx.AsyncClient, status: str | None
) -> None:
    qid, doctor_id = question(r), uid("doc")
    publish(r, doctor_profile_changed(doctor_id, 1, status=status))
    refused = await answer(http, qid, doctor_id)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "doctor_not_verified"
    assert posted_events(r, qid) == []
    publish(r, doctor_profile_changed(doctor_id, 2, status="verified"))
    accepted = await answer(http, qid, doctor_id)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["doctor"]["verified"] is True
    [event] = posted_events(r, qid)
    assert event.doctor.verified is True
    # Suspended later: no further answers, on any question.
    publish(r, doctor_profile_changed(doctor_id, 3, status="suspended"))
    again = await answer(http, question(r), doctor_id)
    assert again.status_code == 403
    assert again.json()["error"]["code"] == "doctor_not_verified"


async def test_a_doctor_outside_the_directory_is_told_to_register(
    r: RedisClient, http: httpx.AsyncClient
) -> None:
    qid, stranger = question(r), uid("doc")
    resp = await answer(http, qid, stranger)
    assert resp.status_code == 403
    error = resp.json()["error"]
    assert error["code"] == "doctor_not_in_directory"
    assert f"PUT /doctors/{stranger}" in error["message"]
    assert posted_events(r, qid) == []


async def test_one_answer_per_doctor_per_question(r: RedisClient, http: httpx.AsyncClient) -> None:
    qid, doctor_id = question(r), doctor(r)
    first = await answer(http, qid, doctor_id)
    assert first.status_code == 201
    second = await answer(http, qid, doctor_id, body="A second opinion of mine, differently put.")
    assert second.status_code == 409
    error = second.json()["error"]
    assert error["code"] == "already_answered"
    assert error["answer_id"] == first.json()["id"]
    assert len(posted_events(r, qid)) == 1
    # Another question is fine.
    assert (await answer(http, question(r), doctor_id)).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"body": "too short"},
        {"body": "x" * 10_001},
        {"body": ANSWER_BODY, "headline": "h" * 201},
        {"body": ANSWER_BODY, "extra": 1},
        {"body": "\x00\x01\x02\x03" * 8},
        {"body": "ok\x07" * 9},
        {"body": 12345678901234567890123},
    ],
)
async def test_bad_bodies_are_422(
    r: RedisClient, http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    qid = question(r)
    resp = await http.post(
        f"/questions/{qid}/answers", json=body, headers=auth(doctor(r), "doctor")
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["message"]
    assert posted_events(r, qid) == []


async def test_malformed_json_is_422(r: RedisClient, http: httpx.AsyncClient) -> None:
    resp = await http.post(
        f"/questions/{question(r)}/answers",
        content=b"{not json",
        headers={**auth(doctor(r), "doctor"), "Content-Type": "application/json"},
    )
    assert resp.status_code == 422


async def test_markup_is_kept_as_literal_text(r: RedisClient, http: httpx.AsyncClient) -> None:
    body = "<script>alert('x')</script> and <b>bold</b> stay text, caf\u0065\u0301 too."
    resp = await answer(http, question(r), doctor(r), body=body + "\x00")
    assert resp.status_code == 201
    assert resp.json()["body"] == body.replace("\u0065\u0301", "\u00e9")


async def test_concurrent_repeats_of_one_idempotency_key_answer_once(
    r: RedisClient, http: httpx.AsyncClient
) -> None:
    qid, doctor_id = question(r), doctor(r)
    headers = {**auth(doctor_id, "doctor"), "Idempotency-Key": uid("key")}
    replies = await asyncio.gather(
        *(
            http.post(f"/questions/{qid}/answers", json={"body": ANSWER_BODY}, headers=headers)
            for _ in range(20)
        )
    )
    assert {resp.status_code for resp in replies} == {201}
    assert len({json.dumps(resp.json(), sort_keys=True) for resp in replies}) == 1
    assert len(posted_events(r, qid)) == 1
    assert (await http.get(f"/questions/{qid}/answers")).json()["answer_count"] == 1

    reused = await http.post(
        f"/questions/{qid}/answers", json={"body": ANSWER_BODY + " More."}, headers=headers
    )
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    other_question = await http.post(
        f"/questions/{question(r)}/answers", json={"body": ANSWER_BODY}, headers=headers
    )
    assert other_question.status_code == 422


async def test_the_doctor_projection_ignores_an_older_profile_version(
    r: RedisClient, http: httpx.AsyncClient
) -> None:
    doctor_id = uid("doc")
    publish(r, doctor_profile_changed(doctor_id, 2, name="Newer Name"))
    publish(r, doctor_profile_changed(doctor_id, 1, name="Older Name"))
    publish(r, doctor_profile_changed(doctor_id, 2, name="Same Version Again"))
    resp = await answer(http, question(r), doctor_id)
    assert resp.status_code == 201
    assert resp.json()["doctor"]["name"] == "Newer Name"
    publish(r, doctor_profile_changed(doctor_id, 3, name="Newest Name"))
    resp = await answer(http, question(r), doctor_id)
    assert resp.json()["doctor"]["name"] == "Newest Name"


async def test_a_redelivered_question_posted_changes_nothing(
    r: RedisClient, http: httpx.AsyncClient
) -> None:
    qid, doctor_id = question(r), doctor(r)
    assert (await answer(http, qid, doctor_id)).status_code == 201
    publish(
        r,
        QuestionPosted(
            correlation_id=uid("c"),
            producer="questions",
            question_id=qid,
            title="The same question, delivered again",
            body="Again.",
            topics=["botox"],
            specialties=[],
            asker_id="someone-else",
        ),
    )
    assert (await http.get(f"/questions/{qid}/answers")).json()["answer_count"] == 1
