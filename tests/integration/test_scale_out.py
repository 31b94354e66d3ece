"""Scale-out: replicas of notify share one consumer group; each entry is handled once."""

from __future__ import annotations

import re
from collections import Counter

import httpx

from shared import streams
from shared.events import Location, QuestionPosted
from tests.support import RedisServer, ServiceProcess, admin_auth, auth, verified, wait_for

DOCTORS = [f"dr-scale-{n}" for n in range(4)]


def consumed(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    match = re.search(
        r'askdoc_events_consumed_total\{group="notify",stream="askdoc.question-posted"\} ([\d.e+]+)',
        text,
    )
    return float(match.group(1)) if match else 0.0


def test_three_notify_replicas_share_the_work_and_alert_each_doctor_once(
    redis_server: RedisServer, redis_url: str
) -> None:
    # No replica dies here, so a long claim time rules out a busy machine's slow handler
    # being taken over (and run twice) by another replica: every entry runs exactly once.
    replicas = [
        ServiceProcess("notify", redis_url, ASKDOC_MAX_RECORDS="5", ASKDOC_CLAIM_IDLE_MS="30000")
        for _ in range(3)
    ]
    for replica in replicas:
        replica.start(wait_ready=False)
    try:
        for replica in replicas:
            replica.wait_ready()
        for doctor in DOCTORS:
            response = httpx.put(
                f"{replicas[0].url}/doctors/{doctor}",
                headers=admin_auth(),
                json=verified(
                    {
                        "name": doctor,
                        "specialties": ["dermatology"],
                        "location": {"zip": "90012"},
                        "radius_km": 80,
                    },
                    doctor,
                ),
            )
            assert response.status_code == 200, response.text
        client = redis_server.client()
        questions = 300
        for n in range(questions):
            event = QuestionPosted(
                correlation_id=f"scale-{n}",
                producer="questions",
                question_id=f"q-scale-{n}",
                title="Acne scars",
                body="What helps?",
                topics=["acne"],
                specialties=["dermatology"],
                location=Location(
                    city="Los Angeles", state="CA", zip="90012", lat=34.06, lon=-118.24
                ),
                asker_id=f"asker-{n}",
            )
            client.xadd(streams.QUESTION_POSTED, event.to_wire())

        def all_consumed() -> bool:
            return sum(consumed(r.url) for r in replicas) >= questions

        wait_for(all_consumed, timeout=60, what="the replicas to consume every question")
        shares = [consumed(r.url) for r in replicas]
        assert all(share > 0 for share in shares), f"a replica did no work: {shares}"
        assert sum(shares) == questions, f"an entry was handled twice: {shares}"
        alerts: Counter[tuple[str, str]] = Counter()
        for doctor in DOCTORS:
            cursor = None
            while True:
                params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
                page = httpx.get(
                    f"{replicas[1].url}/inbox", params=params, headers=auth(doctor, "doctor")
                ).json()
                for item in page["items"]:
                    alerts[(doctor, item["question_id"])] += 1
                cursor = page.get("next_cursor")
                if not cursor:
                    break
        assert len(alerts) == questions * len(DOCTORS)
        assert set(alerts.values()) == {1}
        groups = {g["name"]: g for g in client.xinfo_groups(streams.QUESTION_POSTED)}
        assert groups["notify"]["pending"] == 0
        assert len(client.xinfo_consumers(streams.QUESTION_POSTED, "notify")) == 3
    finally:
        for replica in replicas:
            replica.terminate()
