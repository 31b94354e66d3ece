"""A Redis blip under a consuming service: SIGKILL mid-stream, restart on its AOF.

The events whose handlers were in flight are handled as soon as Redis is back (run again
in place), not a claim time later; nothing is lost or handled twice over, and the outage
is logged once each way instead of an error per failed read.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import redis

from shared import streams
from shared.events import AnswerPosted, DoctorCard
from tests.support import RedisServer, ServiceProcess, auth, wait_for

#: Far longer than the test's bounds: no entry can be claimed within them.
CLAIM_IDLE_MS = 60_000
BEFORE, AFTER = 2000, 300


def _publish(client: redis.Redis, question_id: str, numbers: range) -> None:
    pipe = client.pipeline(transaction=False)
    for n in numbers:
        event = AnswerPosted(
            correlation_id=f"blip-{n}",
            producer="answers",
            answer_id=f"a-blip-{n}",
            question_id=question_id,
            body="An answer.",
            doctor=DoctorCard(id=f"dr-{n}", name=f"Dr {n}"),
            created_at=datetime.now(UTC),
        )
        pipe.xadd(streams.ANSWER_POSTED, event.to_wire())
    pipe.execute()


def _pending(client: redis.Redis) -> set[str]:
    rows = client.xpending_range(streams.ANSWER_POSTED, "questions", "-", "+", 100_000)
    return {str(row["message_id"]) for row in rows}


def test_events_in_flight_when_redis_dies_are_handled_as_soon_as_it_is_back() -> None:
    # appendfsync always: the restarted Redis has every entry and pending entry it acked.
    server = RedisServer(appendonly=True, appendfsync="always").start()
    service = ServiceProcess("questions", server.url, ASKDOC_CLAIM_IDLE_MS=str(CLAIM_IDLE_MS))
    try:
        service.start()
        question = httpx.post(
            f"{service.url}/questions",
            headers=auth("patient-blip"),
            json={"title": "Acne scars on my cheeks", "body": "What helps?", "topics": ["acne"]},
            timeout=10,
        ).json()
        answers = f"{{{streams.QUESTION_POSTED}}}:q:{question['id']}:answers"
        client = server.client()
        _publish(client, question["id"], range(BEFORE))
        wait_for(
            lambda: client.hlen(answers) > BEFORE // 10 and _pending(client),
            timeout=60,
            interval=0.005,
            what="handlers in flight",
        )
        server.kill()
        time.sleep(1.0)
        server.start()
        client = server.client()
        in_flight = _pending(client)
        assert in_flight, "no handler was in flight when Redis died"
        _publish(client, question["id"], range(BEFORE, BEFORE + AFTER))  # the stream goes on

        wait_for(
            lambda: not _pending(client) & in_flight,
            timeout=20,
            what=f"the {len(in_flight)} events in flight (a claim comes after 60 s)",
        )
        wait_for(
            lambda: client.hlen(answers) == BEFORE + AFTER and not _pending(client),
            timeout=60,
            what="every answer on the page, nothing pending",
        )
        page = httpx.get(f"{service.url}/questions/{question['id']}", timeout=10).json()
        assert page["answer_count"] == BEFORE + AFTER
        assert client.xlen(streams.DEAD_LETTER) == 0
        logs = service.logs()
        assert logs.count("consumers_lost_redis") == 1, logs[-3000:]
        assert logs.count("consumers_have_redis_again") == 1, logs[-3000:]
        assert "Message fetch error" not in logs
        assert "Traceback" not in logs
    finally:
        service.terminate(30)
        server.cleanup()
