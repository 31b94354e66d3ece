"""How long the events in flight when Redis blinked wait once it is back.

    python scripts/redis_blip_latency.py [--root DIR ...] [--rounds 2] [--events 5000]
                                         [--down-s 1.0]

For each round and each --root (a checkout of askdoc; default: this one), in turn: a
redis-server with AOF (appendfsync always) on a free port, the questions service from
that checkout with ASKDOC_CLAIM_IDLE_MS at its default (30000), a question and a backlog
of --events answer-posted entries. Once the service is working through them, Redis is
SIGKILLed, kept down --down-s, and started again on its AOF. The entries of the group
still pending when Redis answers again are those whose handler was in flight; the figure
is the time from Redis answering to the last of them acknowledged. Also printed: how
many were in flight, whether every answer landed with nothing left pending, and the
service's log lines about the outage.

Compare two versions in one run with e.g. `git archive <commit> | tar -x -C /tmp/base`
and `--root /tmp/base --root .`. Touches no other Redis; prints, writes nothing.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from askdoc_cli.launcher import RedisProcess, ServiceProcess
from shared import streams
from shared.auth import issue_token
from shared.events import AnswerPosted, DoctorCard

#: A JWT secret for this run only.
SECRET = secrets.token_hex(24)
GROUP = "questions"
#: Log lines worth counting: handler failures, FastStream's fetch errors, the outage lines.
NOISE = (
    "event_handler_failed",
    "Message fetch error",
    "consumers_lost_redis",
    "consumers_have_redis_again",
)


def _service(root: Path, redis_url: str) -> ServiceProcess:
    env = {
        # Import askdoc from `root`, not from the launcher's checkout.
        "PYTHONSAFEPATH": "1",
        "PYTHONPATH": str(root.resolve()),
        "ASKDOC_CLAIM_IDLE_MS": "30000",
        "ASKDOC_LOG_FORMAT": "json",
        "ASKDOC_RATE_LIMIT_WRITES": "100000",
    }
    return ServiceProcess("questions", redis_url, SECRET, env=env)


def _backlog(client: Any, question_id: str, events: int) -> None:
    pipe = client.pipeline(transaction=False)
    for n in range(events):
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


def _pending(client: Any) -> set[str]:
    rows = client.xpending_range(streams.ANSWER_POSTED, GROUP, "-", "+", 100_000)
    return {row["message_id"].decode() for row in rows}


def _wait(predicate: Any, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def trial(root: Path, events: int, down_s: float) -> dict[str, Any]:
    server = RedisProcess(appendonly=True, appendfsync="always").start()
    service = _service(root, server.url)
    try:
        service.start()
        client = redis.Redis(port=server.port)
        token = issue_token(SECRET, "patient-blip", "patient", "Patient", 3600)
        question = httpx.post(
            f"{service.url}/questions",
            headers={"Authorization": f"Bearer {token}"},
            json={"title": "Acne scars on my cheeks", "body": "What helps?", "topics": ["acne"]},
            timeout=10,
        ).json()
        answers_key = f"{{{streams.QUESTION_POSTED}}}:q:{question['id']}:answers"
        _backlog(client, question["id"], events)
        # Crash while the service works through the backlog, handlers in flight.
        if not _wait(
            lambda: client.hlen(answers_key) > events // 10 and len(_pending(client)) > 0,
            60,
            0.005,
        ):
            raise RuntimeError("the service did not start on the backlog")
        server.kill()
        time.sleep(down_s)
        server.start()
        back = time.monotonic()
        client = redis.Redis(port=server.port)
        in_flight = _pending(client)
        done = _wait(lambda: not (_pending(client) & in_flight), 120)
        last_in_flight_s = time.monotonic() - back if done else None
        drained = _wait(
            lambda: client.hlen(answers_key) == events and not _pending(client), 120, 0.1
        )
        logs = service.logs()
        return {
            "root": str(root),
            "in_flight": len(in_flight),
            "last_in_flight_handled_s": None
            if last_in_flight_s is None
            else round(last_in_flight_s, 2),
            "all_handled_none_pending": drained,
            **{line: logs.count(line) for line in NOISE},
        }
    finally:
        service.terminate(30)
        server.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, action="append", default=[])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--down-s", type=float, default=1.0)
    args = parser.parse_args()
    roots = args.root or [Path(__file__).resolve().parents[1]]
    os.environ.pop("ASKDOC_CLAIM_IDLE_MS", None)
    for r in range(args.rounds):
        for root in roots:
            result = trial(root, args.events, args.down_s)
            print(f"round {r + 1}: {result}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
