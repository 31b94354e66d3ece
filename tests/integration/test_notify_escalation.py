"""No question left alone: notify as a process, on real Redis, escalates unanswered questions
(and, in one test, with the questions and answers services as processes too).

Three verified dermatologists around Los Angeles: one downtown (alerted at once, the cap is
one), one in Pasadena (about 14 km: the next ring) and one in San Diego (about 180 km,
beyond everyone's own radius: the ring after). Questions arrive on the stream as the
questions service publishes them; answers likewise.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from shared import streams
from shared.events import AnswerPosted, DoctorCard, Location, ModerationDecided, QuestionPosted
from tests.support import RedisServer, ServiceProcess, admin_auth, auth, verified, wait_for

AFTER_S = 4
ENV = {
    "ASKDOC_ESCALATE_AFTER_S": str(AFTER_S),
    "ASKDOC_ESCALATE_ROUNDS": "2",
    "ASKDOC_ESCALATE_INTERVAL_S": "0.2",
    "ASKDOC_MATCH_CAP": "1",
    "ASKDOC_MATCH_MIN": "1",
}
DOCTORS = {"dr-downtown": "90012", "dr-pasadena": "91101", "dr-san-diego": "92101"}
READY_S = 90  # a loaded machine can take long to import and warm up the gazetteer
TAG = streams.slot_tag(streams.NOTIFICATION_SENT)


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Any]]:
    server = RedisServer().start()
    notify = ServiceProcess("notify", server.url, **ENV)
    # The questions and answers services too, for the escalation driven end to end.
    questions = ServiceProcess("questions", server.url)
    answers = ServiceProcess("answers", server.url)
    world = {"server": server, "notify": notify, "questions": questions, "answers": answers}
    try:
        for proc in (notify, questions, answers):
            proc.start(wait_ready=False)
        for proc in (notify, questions, answers):
            proc.wait_ready(READY_S)
        for doctor_id, zip_code in DOCTORS.items():
            profile = {
                "name": doctor_id,
                "specialties": ["dermatology"],
                "location": {"zip": zip_code},
                "radius_km": 50,
            }
            r = httpx.put(
                f"{notify.url}/doctors/{doctor_id}",
                json=verified(profile, doctor_id),
                headers=admin_auth(),
                timeout=10,
            )
            assert r.status_code == 200, r.text
        yield world
    finally:
        for name in ("notify", "questions", "answers"):
            world[name].terminate(10)
        server.cleanup()


def ask(server: RedisServer, question_id: str) -> QuestionPosted:
    event = QuestionPosted(
        correlation_id=f"corr-{question_id}",
        producer="questions",
        question_id=question_id,
        title="A rash that will not go away",
        body="It itches at night.",
        topics=[],
        specialties=["dermatology"],
        location=Location(city="Los Angeles", state="CA", lat=34.05, lon=-118.25),
        asker_id=f"patient-{question_id}",
    )
    server.client().xadd(streams.QUESTION_POSTED, event.to_wire())
    return event


def answer(server: RedisServer, question_id: str) -> None:
    event = AnswerPosted(
        correlation_id=f"corr-a-{question_id}",
        producer="answers",
        answer_id=f"a-{question_id}",
        question_id=question_id,
        body="See a dermatologist about a patch test; keep a diary of what touches the skin.",
        doctor=DoctorCard(id="dr-downtown", name="dr-downtown", verified=True),
        created_at=datetime.now(UTC),
    )
    server.client().xadd(streams.ANSWER_POSTED, event.to_wire())


def alerts_for(server: RedisServer, question_id: str) -> list[dict[str, Any]]:
    entries = server.client().xrange(streams.NOTIFICATION_SENT, "-", "+")
    events = [json.loads(fields["__data__"]) for _, fields in entries]
    return [e for e in events if e["question_id"] == question_id and e["kind"] == "question-match"]


def alerted(server: RedisServer, question_id: str) -> list[str]:
    return [a["recipient_id"] for a in alerts_for(server, question_id)]


def due(server: RedisServer, question_id: str) -> float | None:
    score: float | None = server.client().zscore(f"{TAG}:esc-due", question_id)
    return score


def test_an_unanswered_question_reaches_the_next_rings_round_by_round(
    world: dict[str, Any],
) -> None:
    server: RedisServer = world["server"]
    posted = time.monotonic()
    ask(server, "q-alone")
    wait_for(lambda: alerted(server, "q-alone"), timeout=15, what="the first alert")
    assert alerted(server, "q-alone") == ["dr-downtown"]
    assert due(server, "q-alone") is not None

    wait_for(lambda: len(alerted(server, "q-alone")) == 2, timeout=AFTER_S + 15, what="round one")
    assert time.monotonic() - posted >= AFTER_S - 0.5  # not before the question waited
    second = alerts_for(server, "q-alone")[1]
    assert second["recipient_id"] == "dr-pasadena"
    assert second["reason"]["escalation"] == 1
    assert second["reason"]["no_answer_after"] == f"{AFTER_S} s"
    assert 10 < second["reason"]["distance_km"] < 20

    wait_for(lambda: len(alerted(server, "q-alone")) == 3, timeout=AFTER_S + 15, what="round two")
    third = alerts_for(server, "q-alone")[2]
    assert third["recipient_id"] == "dr-san-diego"
    assert third["reason"]["escalation"] == 2
    assert third["reason"]["distance_km"] > 150  # beyond the doctor's own 50 km radius
    wait_for(lambda: due(server, "q-alone") is None, timeout=10, what="the last round to end it")

    # The reason says why in words, in the doctor's inbox.
    inbox = httpx.get(
        f"{world['notify'].url}/inbox",
        headers=auth("dr-san-diego", "doctor"),
        timeout=10,
    ).json()
    [item] = [i for i in inbox["items"] if i["question_id"] == "q-alone"]
    km = third["reason"]["distance_km"]
    assert item["reason_text"].startswith(
        f"no answer yet after {2 * AFTER_S} s; you are {km:g} km away"
    )

    # No further rounds (two at most), and no doctor heard of it twice.
    time.sleep(AFTER_S + 1)
    counts = Counter(alerted(server, "q-alone"))
    assert set(counts) == set(DOCTORS) and max(counts.values()) == 1


def test_an_answer_stops_the_escalation(world: dict[str, Any]) -> None:
    server: RedisServer = world["server"]
    ask(server, "q-answered")
    wait_for(lambda: alerted(server, "q-answered"), timeout=15, what="the first alert")
    answer(server, "q-answered")
    wait_for(lambda: due(server, "q-answered") is None, timeout=15, what="the answer to stop it")
    time.sleep(AFTER_S + 2)
    assert alerted(server, "q-answered") == ["dr-downtown"]


def test_a_question_moderators_hid_escalates_no_further_and_its_asker_is_told(
    world: dict[str, Any],
) -> None:
    server: RedisServer = world["server"]
    ask(server, "q-hidden")
    wait_for(lambda: alerted(server, "q-hidden"), timeout=15, what="the first alert")
    hidden = ModerationDecided(
        correlation_id="corr-mod-q-hidden",
        producer="questions",
        item_kind="question",
        item_id="q-hidden",
        question_id="q-hidden",
        author_id="patient-q-hidden",
        decision="hidden",
        reason="spam",
        decision_version=1,
    )
    for _ in range(2):  # at-least-once: a redelivery tells the asker no second time
        server.client().xadd(streams.MODERATION_DECIDED, hidden.to_wire())
    wait_for(lambda: due(server, "q-hidden") is None, timeout=15, what="hiding to stop it")

    def told() -> list[dict[str, Any]]:
        inbox = httpx.get(
            f"{world['notify'].url}/inbox", headers=auth("patient-q-hidden"), timeout=10
        ).json()
        return [i for i in inbox["items"] if i["kind"] == "item-hidden"]

    [item] = wait_for(told, timeout=15, what="the asker told")
    assert item["reason"] == {"item_kind": "question", "category": "spam"}
    time.sleep(AFTER_S + 2)
    assert alerted(server, "q-hidden") == ["dr-downtown"]
    assert len(told()) == 1


def test_a_question_asked_through_the_services_escalates_until_a_doctor_answers(
    world: dict[str, Any],
) -> None:
    server: RedisServer = world["server"]
    posted = httpx.post(
        f"{world['questions'].url}/questions",
        json={
            "title": "A rash on my arm that will not go away",
            "body": "It itches at night and spreads slowly.",
            "topics": ["acne"],
            "location": {"city": "Los Angeles", "state": "CA"},
        },
        headers=auth("patient-e2e"),
        timeout=10,
    )
    assert posted.status_code == 201, posted.text
    qid = posted.json()["id"]
    wait_for(lambda: alerted(server, qid) == ["dr-downtown"], timeout=15, what="the first alert")
    wait_for(lambda: len(alerted(server, qid)) == 2, timeout=AFTER_S + 15, what="round one")
    assert alerted(server, qid) == ["dr-downtown", "dr-pasadena"]

    # The doctor the escalation reached answers through the answers service: that stops it.
    def answered() -> bool:
        reply = httpx.post(
            f"{world['answers'].url}/questions/{qid}/answers",
            json={"body": "A patch test finds the allergen; keep a diary of what touches it."},
            headers=auth("dr-pasadena", "doctor"),
            timeout=10,
        )
        return reply.status_code == 201

    wait_for(answered, timeout=20, what="the answers service to take the answer")
    wait_for(lambda: due(server, qid) is None, timeout=15, what="the answer to stop it")
    time.sleep(AFTER_S + 2)
    assert alerted(server, qid) == ["dr-downtown", "dr-pasadena"]


def test_escalation_survives_a_restart_of_notify(world: dict[str, Any]) -> None:
    server: RedisServer = world["server"]
    ask(server, "q-restart")
    wait_for(lambda: alerted(server, "q-restart"), timeout=15, what="the first alert")
    assert due(server, "q-restart") is not None
    world["notify"].kill()  # a crash: nothing kept in memory survives
    due_ms = due(server, "q-restart")
    assert due_ms is not None
    time.sleep(max(0.0, due_ms / 1000 - time.time()) + 1)
    # Due while notify was down: nobody escalated it.
    assert alerted(server, "q-restart") == ["dr-downtown"]
    world["notify"] = ServiceProcess("notify", server.url, **ENV)
    world["notify"].start(timeout=READY_S)
    wait_for(
        lambda: len(alerted(server, "q-restart")) == 2, timeout=20, what="round one after restart"
    )
    assert alerted(server, "q-restart") == ["dr-downtown", "dr-pasadena"]
