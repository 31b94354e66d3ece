"""Measure what one entry of each askdoc stream costs in Redis, and what retention costs.

    python scripts/stream_budget.py redis://127.0.0.1:6390/0 [--maxlen 20000] [--entries 2000]

Use a scratch Redis: the script writes to `budget:<stream>` keys and deletes them after.
It adds `--entries` real events (built with the event models, at a typical and at the
largest allowed size) to a stream per kind, reads MEMORY USAGE, and prints bytes per
entry and the memory of each stream at `--maxlen` entries. docs/operations.md ("Redis
memory and retention") quotes its output; tests/integration/test_redis_memory.py checks
the configured retention still fits the configured maxmemory.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared import events
from shared.events import Location

# Typical: the seed question is ~250 characters, answers on such pages 500-1500.
TYPICAL_QUESTION = 800
TYPICAL_ANSWER = 1200
MAX_TEXT = 10_000  # the questions' and answers' body limit


def _text(n: int) -> str:
    words = "my face is asymmetrical after the injection and I would like to know "
    return (words * (n // len(words) + 1))[:n]


def _base(producer: str) -> dict[str, Any]:
    return {"correlation_id": uuid.uuid4().hex, "producer": producer}


def sample_events(size: str) -> dict[str, events.Event]:
    """One event per stream, at `typical` or `max` text size."""
    question_text = TYPICAL_QUESTION if size == "typical" else MAX_TEXT
    answer_text = TYPICAL_ANSWER if size == "typical" else MAX_TEXT
    place = Location(city="Los Angeles", state="CA", zip="90012", lat=34.05, lon=-118.24)
    card = {
        "id": "dr-jon-perlman",
        "name": "Jon A. Perlman",
        "credentials": "MD, FACS",
        "specialty": "plastic-surgery",
        "city": "Beverly Hills",
        "state": "CA",
        "rating": 4.9,
        "review_count": 33,
    }
    samples: list[events.Event] = [
        events.QuestionPosted(
            **_base("questions"),
            question_id="q-" + uuid.uuid4().hex[:20],
            title=_text(90),
            body=_text(question_text),
            topics=["facial-asymmetry", "botox"],
            specialties=["plastic-surgery", "dermatology", "facial-plastic-surgery"],
            location=place,
            asker_id="patient-" + uuid.uuid4().hex[:12],
        ),
        events.AnswerPosted(
            **_base("answers"),
            answer_id="a-" + uuid.uuid4().hex[:20],
            question_id="q-" + uuid.uuid4().hex[:20],
            headline=_text(60),
            body=_text(answer_text),
            doctor=card,
            created_at=datetime.now(UTC),
        ),
        events.VoteCast(
            **_base("votes"),
            answer_id="a-" + uuid.uuid4().hex[:20],
            question_id="q-" + uuid.uuid4().hex[:20],
            doctor_id="dr-jon-perlman",
            voter_id="patient-" + uuid.uuid4().hex[:12],
            value=1,
            helpful=40,
            unhelpful=5,
            tally_version=45,
        ),
        events.DoctorProfileChanged(
            **_base("notify"),
            doctor_id="dr-jon-perlman",
            name="Jon A. Perlman",
            credentials="MD, FACS",
            specialties=["plastic-surgery", "facial-plastic-surgery"],
            location=place,
            radius_km=50,
            rating=4.9,
            review_count=33,
            profile_version=3,
        ),
        events.NotificationSent(
            **_base("notify"),
            notification_id="n-" + uuid.uuid4().hex[:20],
            recipient_id="dr-jon-perlman",
            kind="question-match",
            question_id="q-" + uuid.uuid4().hex[:20],
            channels=["inbox", "stream", "webhook"],
            reason={"specialty": "plastic-surgery", "distance_km": 12.4, "rank": 1},
        ),
    ]
    question = samples[0]
    samples.append(
        events.DeadLetter(
            **_base("notify"),
            source_stream=question.stream,
            entry_id="1764547200000-0",
            group="notify",
            consumer="notify-7d9c-1-abc123",
            # The consumer keeps at most 4096 characters of each field.
            fields={events.WIRE_FIELD: question.model_dump_json()[:4096]},
            error="TimeoutError: webhook receiver did not answer",
            delivery_count=5,
        )
    )
    return {event.stream: event for event in samples}


def measure(url: str, entries: int) -> dict[str, dict[str, int]]:
    """Bytes per entry of each stream, typical and max, measured with MEMORY USAGE."""
    client = redis.Redis.from_url(url, decode_responses=True)
    result: dict[str, dict[str, int]] = {}
    for size in ("typical", "max"):
        for stream, event in sample_events(size).items():
            key = f"budget:{stream}"
            client.delete(key)
            wire = event.to_wire()
            pipe = client.pipeline(transaction=False)
            for n in range(entries):
                pipe.xadd(key, wire)
                if n % 500 == 499:
                    pipe.execute()
            pipe.execute()
            used = int(client.memory_usage(key, samples=0) or 0)
            client.delete(key)
            result.setdefault(stream, {})[size] = used // entries
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("redis_url")
    parser.add_argument("--maxlen", type=int, default=20_000)
    parser.add_argument("--entries", type=int, default=2_000)
    args = parser.parse_args()
    sizes = measure(args.redis_url, args.entries)
    mib = 1024 * 1024
    rows = [
        {
            "stream": stream,
            "bytes_per_entry_typical": s["typical"],
            "bytes_per_entry_max": s["max"],
            "mib_at_maxlen_typical": round(s["typical"] * args.maxlen / mib, 1),
            "mib_at_maxlen_max": round(s["max"] * args.maxlen / mib, 1),
        }
        for stream, s in sizes.items()
    ]
    total_typical = round(sum(r["mib_at_maxlen_typical"] for r in rows), 1)
    total_max = round(sum(r["mib_at_maxlen_max"] for r in rows), 1)
    print(
        json.dumps(
            {
                "maxlen": args.maxlen,
                "streams": rows,
                "total_mib_typical": total_typical,
                "total_mib_max": total_max,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
