"""Redis at maxmemory (noeviction): the four services as processes on a small redis-server.

They answer 503 with Retry-After (never 500), lose nothing they acknowledged (a 201 means
the question is stored and its event is on the stream), and recover by themselves once
memory is freed: refused writes succeed on retry, consumers catch up, nothing is
dead-lettered because Redis was full.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from shared import streams
from tests.support import (
    RedisServer,
    ServiceProcess,
    admin_auth,
    auth,
    verified,
    wait_for,
)

MAXMEMORY = 48 * 1024 * 1024
MAX_DELIVERIES = 5  # the default ASKDOC_MAX_DELIVERIES
CLAIM_IDLE_S = 1.5  # ASKDOC_CLAIM_IDLE_MS in tests.support
FILLER = "x" * (256 * 1024)
# The four services that hold data (the web, if any, only calls them over HTTP).
BACKENDS = ["questions", "answers", "votes", "notify"]
ANSWER = "Botulinum toxin in the masseter can soften one side; see a specialist in person. " * 2


def question(n: int) -> dict[str, Any]:
    return {
        "title": f"Uneven smile question number {n}",
        "body": "My smile pulls to one side. Is there an injection for it?",
        "topics": ["botox"],
    }


def fill(client: redis.Redis) -> int:
    """SET filler keys until Redis refuses a write, and keep it full; keys written.

    Memory moves by itself near the limit (acks, expiring keys, buffers), which lets a
    write through now and then; maxmemory is then lowered just under what is used, so
    Redis stays full for the assertions.
    """
    n = 0
    while True:
        try:
            client.set(f"filler:{n}", FILLER)
        except redis.exceptions.OutOfMemoryError:
            break
        n += 1
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used - 1024 * 1024)
    return n


def max_deliveries_failed(consumers: list[ServiceProcess]) -> int:
    """The most deliveries any failed handling the consumers logged had (0 if none)."""
    most = 0
    for line in "\n".join(p.logs() for p in consumers).splitlines():
        # A line still being written is not JSON yet: the next poll reads it whole.
        if "event_handler_failed" in line and line.endswith("}"):
            most = max(most, int(json.loads(line)["deliveries"]))
    return most


def free(client: redis.Redis, keys: int) -> None:
    client.delete(*[f"filler:{n}" for n in range(keys)])
    client.config_set("maxmemory", MAXMEMORY)


@pytest.fixture(scope="module")
def system() -> Iterator[tuple[RedisServer, dict[str, ServiceProcess]]]:
    server = RedisServer(
        appendonly=True,
        extra=["--maxmemory", str(MAXMEMORY), "--maxmemory-policy", "noeviction"],
    ).start()
    procs = {name: ServiceProcess(name, server.url) for name in BACKENDS}
    try:
        for proc in procs.values():
            proc.start(wait_ready=False)
        for proc in procs.values():
            proc.wait_ready(timeout=120)  # four services loading at once on a busy machine
        yield server, procs
    finally:
        for proc in procs.values():
            proc.terminate(10)
        server.cleanup()


def test_full_redis_gets_503_loses_nothing_and_recovers(
    system: tuple[RedisServer, dict[str, ServiceProcess]],
) -> None:
    server, procs = system
    url = {name: p.url for name, p in procs.items()}
    client = server.client()
    http = httpx.Client(timeout=10)

    # Before: a doctor, a question, an answer, so every write path has what it needs.
    doctor = {"Authorization": auth("dr-oom", "doctor", "Dr Oom")["Authorization"]}
    profile = {
        "name": "Dr Oom",
        "specialties": ["dermatology"],
        "location": {"city": "Los Angeles", "state": "CA"},
        "radius_km": 50,
    }
    registered = http.put(
        f"{url['notify']}/doctors/dr-oom", json=verified(profile, "dr-oom"), headers=admin_auth()
    )
    assert registered.is_success
    first = http.post(f"{url['questions']}/questions", json=question(0), headers=auth("p-0"))
    assert first.status_code == 201, first.text
    qid = first.json()["id"]

    def answer() -> httpx.Response | None:
        reply = http.post(
            f"{url['answers']}/questions/{qid}/answers", json={"body": ANSWER}, headers=doctor
        )
        return None if reply.status_code in (403, 404) else reply  # projections catching up

    answered = wait_for(answer, timeout=30, interval=0.2, what="the answers service")
    assert answered.status_code == 201, answered.text
    aid = answered.json()["id"]
    wait_for(
        lambda: http.get(f"{url['votes']}/answers/{aid}/votes").status_code == 200,
        what="the votes service to know the answer",
    )

    # Consumers with work in hand when Redis fills: answers and notify are paused
    # (SIGSTOP) while questions are posted, and resume only once Redis is full, so their
    # handlers run, and fail, against a full Redis for longer than the retries last.
    consumers = [procs["answers"], procs["notify"]]
    for proc in consumers:
        assert proc.proc is not None
        os.kill(proc.proc.pid, signal.SIGSTOP)
    replies: list[tuple[int, httpx.Response]] = []
    stop = threading.Event()

    def post_forever() -> None:
        with httpx.Client(timeout=10) as poster:
            n = 1
            while not stop.is_set():
                reply = poster.post(
                    f"{url['questions']}/questions", json=question(n), headers=auth(f"p-{n}")
                )
                replies.append((n, reply))
                n += 1

    # Post questions from a second thread while Redis fills up under them.
    poster = threading.Thread(target=post_forever)
    poster.start()
    try:
        time.sleep(0.5)
        fillers = fill(client)
        wait_for(
            lambda: any(r.status_code == 503 for _, r in replies[-3:]),
            timeout=15,
            what="a 503 once Redis is full",
        )
    finally:
        stop.set()
        poster.join(15)
        for proc in consumers:
            assert proc.proc is not None
            os.kill(proc.proc.pid, signal.SIGCONT)
    # Until a failing entry has been retried past the maximum deliveries, twice over
    # (each retry waits the claim idle time), while Redis stays full.
    wait_for(
        lambda: max_deliveries_failed(consumers) > MAX_DELIVERIES + 1,
        timeout=4 * MAX_DELIVERIES * CLAIM_IDLE_S + 30,
        interval=0.5,
        what="handlers to fail past the maximum deliveries",
    )
    # A full Redis is no blip to ride out: its refused writes are left to the claimer, and
    # no consumer logs an outage begun and ended at every read and refused write.
    assert all("consumers_lost_redis" not in p.logs() for p in consumers)

    assert replies and fillers > 0
    statuses = {r.status_code for _, r in replies}
    assert statuses <= {201, 503}, [(r.status_code, r.text) for _, r in replies][-5:]

    # Every write path refuses clearly while Redis is full.
    refused = {
        "questions": http.post(
            f"{url['questions']}/questions", json=question(9999), headers=auth("p-x")
        ),
        "answers": http.post(
            f"{url['answers']}/questions/{qid}/answers",
            json={"body": ANSWER},
            headers=auth("dr-late", "doctor"),
        ),
        "votes": http.put(
            f"{url['votes']}/answers/{aid}/vote", json={"value": 1}, headers=auth("reader-1")
        ),
        "notify": http.put(
            f"{url['notify']}/doctors/dr-oom", json={**profile, "radius_km": 60}, headers=doctor
        ),
    }
    for name, reply in refused.items():
        assert reply.status_code == 503, (name, reply.status_code, reply.text)
        assert int(reply.headers["Retry-After"]) >= 1, name
        assert reply.json()["error"]["code"] == "unavailable", name
    # Reading needs no memory: the page still shows.
    assert http.get(f"{url['questions']}/questions/{qid}").status_code == 200
    for name, proc in procs.items():
        assert proc.proc is not None and proc.proc.poll() is None, f"{name} died"

    # Nothing acknowledged was lost: each 201 is a stored question with its event.
    accepted = [r.json()["id"] for _, r in replies if r.status_code == 201] + [qid]
    on_stream = {
        json.loads(fields["__data__"])["question_id"]
        for _, fields in client.xrange(streams.QUESTION_POSTED)
    }
    for posted in accepted:
        assert posted in on_stream, posted
        assert http.get(f"{url['questions']}/questions/{posted}").status_code == 200

    # Memory comes back: the refused writes succeed when retried.
    free(client, fillers)
    retried = http.post(f"{url['questions']}/questions", json=question(10_000), headers=auth("p-y"))
    assert retried.status_code == 201, retried.text
    voted = http.put(
        f"{url['votes']}/answers/{aid}/vote", json={"value": 1}, headers=auth("reader-1")
    )
    assert voted.status_code == 200, voted.text
    changed = http.put(
        f"{url['notify']}/doctors/dr-oom", json={**profile, "radius_km": 60}, headers=doctor
    )
    assert changed.is_success, changed.text

    # The consumers did meet the full Redis (their handlers failed and were retried)...
    logs = "\n".join(p.logs() for p in consumers)
    failed = [json.loads(line) for line in logs.splitlines() if "event_handler_failed" in line]
    assert any("OutOfMemoryError" in f["error"] for f in failed), "no handler met the full Redis"
    # Entries went past the maximum deliveries while Redis was full, yet none was
    # dead-lettered for it (not even tried: a near-full Redis could take the letter).
    assert max(f["deliveries"] for f in failed) > MAX_DELIVERIES
    assert "event_dead_lettered" not in logs

    # ...and catch up on everything, with nothing in the dead letters.
    def caught_up() -> bool:
        for stream, groups in (
            (streams.QUESTION_POSTED, ("answers", "notify")),
            (streams.VOTE_CAST, ("questions", "notify")),
            (streams.ANSWER_POSTED, ("questions", "votes", "notify")),
        ):
            for group in client.xinfo_groups(stream):
                if group["name"] in groups and (group["pending"] or group["lag"]):
                    return False
        return True

    wait_for(caught_up, timeout=60, interval=0.3, what="every consumer group to catch up")
    assert client.xlen(streams.DEAD_LETTER) == 0, client.xrange(streams.DEAD_LETTER)
    page = http.get(f"{url['questions']}/questions/{qid}").json()
    assert page["answer_count"] == 1
    for name, proc in procs.items():
        assert "Traceback" not in proc.logs(), name
