"""End to end: a red flag hidden with a zero-width space is still urgent, on the page and
on the question-posted event (questions as a process on its own redis-server)."""

from __future__ import annotations

import json

import httpx

from shared import streams
from tests.support import RedisServer, ServiceProcess, auth

HIDDEN = "sudden che\u200bst pain and my left arm is numb"


def test_a_zero_width_space_does_not_hide_chest_pain() -> None:
    server = RedisServer().start()
    questions = ServiceProcess("questions", server.url)
    try:
        questions.start(wait_ready=False)
        questions.wait_ready(timeout=120)  # generous: the gazetteer loads slowly on a busy machine
        check_hidden_chest_pain(server, questions)
    finally:
        questions.terminate(10)
        server.cleanup()


def check_hidden_chest_pain(server: RedisServer, questions: ServiceProcess) -> None:
    reply = httpx.post(
        f"{questions.url}/questions",
        json={"title": "Is this serious?", "body": HIDDEN, "topics": ["botox"]},
        headers=auth("patient-zw"),
        timeout=10,
    )
    assert reply.status_code == 201, reply.text
    qid = reply.json()["id"]

    page = httpx.get(f"{questions.url}/questions/{qid}", timeout=10).json()
    assert page["urgent"] is True
    assert "chest_pain" in page["red_flags"]
    assert "911" in page["emergency_notice"]
    # The asker's text is kept as written; only the rules read the folded copy.
    assert page["body"] == HIDDEN

    entries = server.client().xrange(streams.QUESTION_POSTED)
    events = [json.loads(fields["__data__"]) for _, fields in entries]
    (event,) = [e for e in events if e["question_id"] == qid]
    assert event["urgent"] is True
    assert "chest_pain" in event["red_flags"]
