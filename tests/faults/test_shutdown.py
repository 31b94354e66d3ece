"""Graceful shutdown: SIGTERM mid-stream finishes and acks in-flight work; nothing is left
pending for redelivery, and the restarted service picks up exactly where it stopped."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import UTC, datetime

import httpx
import pytest

from shared import streams
from shared.events import AnswerPosted, DoctorCard
from tests.support import RedisServer, ServiceProcess, auth, wait_for

pytestmark = pytest.mark.slow


def test_sigterm_acks_in_flight_entries_and_leaves_nothing_pending(
    redis_server: RedisServer, redis_url: str
) -> None:
    client = redis_server.client()
    service = ServiceProcess("questions", redis_url).start()
    question = httpx.post(
        f"{service.url}/questions",
        headers=auth("patient-shutdown"),
        json={"title": "Acne scars on my cheeks", "body": "What helps?", "topics": ["acne"]},
        timeout=30,
    ).json()
    answers = 20_000
    pipe = client.pipeline(transaction=False)
    for n in range(answers):
        event = AnswerPosted(
            correlation_id=f"shutdown-{n}",
            producer="answers",
            answer_id=f"a-shutdown-{n}",
            question_id=question["id"],
            body="An answer.",
            doctor=DoctorCard(id=f"dr-{n}", name=f"Dr {n}"),
            created_at=datetime.now(UTC),
        )
        pipe.xadd(streams.ANSWER_POSTED, event.to_wire())
    pipe.execute()
    # Stop while the backlog is being worked through.
    wait_for(lambda: client.hlen(_answers_key(question["id"])) > 0, what="consumption to start")
    # uvicorn re-raises the SIGTERM after its graceful shutdown, so the exit code is -15;
    # what matters is that the shutdown ran to its end.
    service.terminate(30)
    assert "service_stopped" in service.logs(), service.logs()[-2000:]
    group = next(g for g in client.xinfo_groups(streams.ANSWER_POSTED) if g["name"] == "questions")
    assert group["pending"] == 0, "a clean stop left entries for redelivery"
    handled_before = client.hlen(_answers_key(question["id"]))

    restarted = ServiceProcess("questions", redis_url, port=service.port).start()
    try:
        wait_for(
            lambda: client.hlen(_answers_key(question["id"])) == answers,
            timeout=90,  # up to 20,000 entries: a loaded machine took more than 15 s
            what="the rest after restart",
        )
        page = httpx.get(f"{restarted.url}/questions/{question['id']}", timeout=30).json()
        assert page["answer_count"] == answers
        assert "Traceback" not in service.logs()
        print(
            f"\nhandled before SIGTERM: {handled_before}, after restart: {answers - handled_before}"
        )
    finally:
        restarted.terminate()


def _answers_key(qid: str) -> str:
    return f"{{{streams.QUESTION_POSTED}}}:q:{qid}:answers"


#: SIGTERMs from "connecting" through the gazetteer's load to just past readiness (it
#: took ~0.5 s from the groups' creation here). One that came as the load ended used to
#: hang the process: readiness and the stop met while the watchers ran their first Redis
#: commands, and a cancel lost there left stop() waiting for ever.
SIGTERM_AT = (
    [("Application startup complete", 0.0)]
    + [("consumer_group_created", n / 10) for n in range(9)]
    # Inside broker.start() (a few ms): the half-started broker is closed too.
    + [("consumers_starting", n / 1000) for n in range(3)]
)


@pytest.mark.parametrize(("marker", "after_s"), SIGTERM_AT)
def test_sigterm_during_start_up_ends_the_process_promptly(
    redis_url: str, marker: str, after_s: float
) -> None:
    service = ServiceProcess("questions", redis_url).start(wait_ready=False)
    try:
        wait_for(lambda: marker in service.logs(), timeout=60, interval=0.01, what=marker)
        time.sleep(after_s)
        service.signal(signal.SIGTERM)
        assert service.proc is not None
        try:
            service.proc.wait(10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 10 s after a SIGTERM:\n{service.logs()[-2000:]}")
        logs = service.logs()
        assert "service_stopped" in logs, logs[-2000:]
        assert "Traceback" not in logs, logs[-4000:]
    finally:
        service.terminate(5)
