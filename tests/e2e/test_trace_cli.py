"""`askdoc trace QUESTION_ID` against real Redis, with the four services as processes.

One question is posted, answered and voted on; its doctors are near, far, of another
specialty, in quiet hours, or behind a failing webhook; one poison entry about it is
dead-lettered. The command must tell each doctor's story from the streams and notify's
records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from askdoc_cli.main import app
from shared import streams
from tests.receivers import WebhookReceiver
from tests.support import (
    LOS_ANGELES,
    RedisServer,
    auth,
    register_doctor,
    running_services,
    wait_for,
)

SECRET = "whsec_YXNrZG9jLXRlc3Qtd2ViaG9vay1zZWNyZXQtMDAwMDA="


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Any]]:
    server = RedisServer().start()
    # /broken refuses every delivery for good (400: not retried).
    hooks = WebhookReceiver(behaviours={"/broken": lambda _: (400, {})}).start()
    try:
        with running_services(server.url, ["questions", "answers", "votes", "notify"]) as procs:
            yield {"server": server, "hooks": hooks, "procs": procs}
    finally:
        hooks.stop()
        server.cleanup()


def trace(redis_url: str, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["trace", *args, "--json", "--redis-url", redis_url])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_trace_tells_each_doctors_story(world: dict[str, Any]) -> None:
    procs, hooks, server = world["procs"], world["hooks"], world["server"]
    notify = procs["notify"].url
    now = datetime.now(UTC)
    quiet = {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=1)).strftime("%H:%M"),
        "tz": "UTC",
    }
    register_doctor(notify, "dr-near", webhook_url=hooks.url("/ok"), webhook_secret=SECRET)
    register_doctor(notify, "dr-broken", webhook_url=hooks.url("/broken"), webhook_secret=SECRET)
    register_doctor(notify, "dr-far", location={"city": "New York", "state": "NY"}, radius_km=10)
    register_doctor(notify, "dr-other", specialties=["plastic-surgery"])
    register_doctor(notify, "dr-quiet", quiet_hours=quiet)

    posted = httpx.post(
        f"{procs['questions'].url}/questions",
        json={
            "title": "Acne scars on my cheeks",
            "body": "What helps with old acne scars?",
            "topics": ["acne"],
            "specialties": ["dermatology"],
            "location": LOS_ANGELES,
        },
        headers={**auth("patient-trace"), "X-Request-ID": "req-trace-1"},
        timeout=10,
    )
    assert posted.status_code == 201, posted.text
    qid = posted.json()["id"]

    def answered() -> str | None:
        r = httpx.post(
            f"{procs['answers'].url}/questions/{qid}/answers",
            json={"body": "Laser resurfacing and subcision help with old acne scars."},
            headers=auth("dr-near", "doctor", "Dr dr-near"),
            timeout=10,
        )
        return str(r.json()["id"]) if r.status_code == 201 else None

    answer_id = wait_for(answered, timeout=60, interval=0.5, what="the answer")
    voted = wait_for(
        lambda: (
            httpx.put(
                f"{procs['votes'].url}/answers/{answer_id}/vote",
                json={"value": 1},
                headers=auth("reader-1"),
                timeout=10,
            ).status_code
            == 200
        ),
        timeout=60,
        interval=0.5,
        what="the vote",
    )
    assert voted
    # A poison entry about the question: every consumer of answer-posted dead-letters it.
    poison = {"event_type": "answer-posted", "question_id": qid, "correlation_id": "req-trace-1"}
    server.client().xadd(streams.ANSWER_POSTED, {"__data__": json.dumps(poison)})
    wait_for(lambda: hooks.to("/ok") and hooks.to("/broken"), timeout=60, what="webhooks")

    def settled() -> dict[str, Any] | None:
        report = trace(server.url, qid)
        kinds = {(a["recipient_id"], a["kind"]) for a in report["alerts"]}
        delivery = {a["recipient_id"]: a["delivery"] for a in report["alerts"]}
        done = (
            ("patient-trace", "new-answer") in kinds
            and delivery.get("dr-broken", {}).get("webhook") == "failed"
            and delivery.get("dr-near", {}).get("webhook") == "delivered"
            and report["dead_letters"]
        )
        return report if done else None

    report = wait_for(settled, timeout=90, interval=1, what="the whole journey")
    assert report["correlation_id"] == "req-trace-1"
    on = {e["stream"] for e in report["events"]}
    assert on >= {
        streams.QUESTION_POSTED,
        streams.ANSWER_POSTED,
        streams.VOTE_CAST,
        streams.NOTIFICATION_SENT,
    }
    near = next(a for a in report["alerts"] if a["recipient_id"] == "dr-near")
    assert near["kind"] == "question-match" and near["reason"]["specialty"] == "dermatology"
    alerted = {a["recipient_id"] for a in report["alerts"] if a["kind"] == "question-match"}
    assert alerted == {"dr-near", "dr-broken"}
    assert {d["source_stream"] for d in report["dead_letters"]} == {streams.ANSWER_POSTED}

    def verdict(doctor: str) -> str:
        return str(trace(server.url, qid, "--doctor", doctor)["doctor"]["verdict"])

    assert verdict("dr-near") == "alerted"
    assert verdict("dr-broken") == "delivery failed"
    assert verdict("dr-far") == "out of radius"
    assert verdict("dr-other") == "not matched"
    assert verdict("dr-quiet") == "held"

    # The table for people, and a clear failure for a question that never was.
    table = CliRunner().invoke(app, ["trace", qid, "--doctor", "dr-far", "--redis-url", server.url])
    assert table.exit_code == 0 and "out of radius" in table.stdout
    missing = CliRunner().invoke(app, ["trace", "q-nowhere", "--redis-url", server.url])
    assert missing.exit_code == 1
