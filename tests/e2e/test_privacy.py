"""End to end (issue 11): a patient's whereabouts leave questions coarse, only admins set
ratings, a re-import keeps a doctor's own settings, ids in paths are strict, and
anonymous reads are limited per client address. Services run as processes on their own
redis-server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import streams
from tests.support import (
    JWT_SECRET,
    RedisServer,
    ServiceProcess,
    auth,
    doctor_profile,
    register_doctor,
    running_services,
    wait_for,
)

POINT = {"lat": 34.052231, "lon": -118.243683}  # a home in downtown Los Angeles
# More than 2 decimals anywhere in a JSON number next to "lat"/"lon".
PRECISE = re.compile(r'"(lat|lon)":\s*-?\d+\.\d{3,}')


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Any]]:
    server = RedisServer().start()
    each: dict[str, dict[str, str]] = {
        # Every question-posted entry is poison to answers: it lands in the dead letters
        # as received, which is what this test reads there.
        "answers": {"ASKDOC_MAX_ENTRY_BYTES": "300"},
        "questions": {"ASKDOC_ANON_READ_LIMIT": "100000"},
        "notify": {
            "ASKDOC_URGENT_PER_ASKER_PER_DAY": "2",
            "ASKDOC_URGENT_PER_DOCTOR_PER_QUIET_HOUR": "1",
        },
    }
    try:
        with running_services(server.url, [*each, "votes"], each) as procs:
            urls = {name: proc.url for name, proc in procs.items()}
            yield {"server": server, "urls": urls, "procs": procs}
    finally:
        server.cleanup()


def doctor_body(**changes: Any) -> dict[str, Any]:
    return doctor_profile("dr-near", **{"name": "Dr Near", "radius_km": 10, **changes})


def test_a_home_leaves_questions_only_coarse_and_named_after_its_city(
    world: dict[str, Any],
) -> None:
    urls, redis = world["urls"], world["server"].client()
    # Only verified doctors are alerted: an admin registers this one verified.
    register_doctor(urls["notify"], "dr-near", name="Dr Near", radius_km=10)
    posted = httpx.post(
        f"{urls['questions']}/questions",
        json={
            "title": "Acne scars on my cheeks",
            "body": "What helps with old acne scars?",
            "topics": ["acne"],
            "location": POINT,
            "anonymous": True,
        },
        headers=auth("patient-home"),
        timeout=10,
    )
    assert posted.status_code == 201, posted.text
    qid = posted.json()["id"]
    expected = {"city": "Los Angeles", "state": "CA", "zip": None, "lat": 34.05, "lon": -118.24}
    assert posted.json()["location"] == expected

    page = httpx.get(f"{urls['questions']}/questions/{qid}", timeout=10)
    listing = httpx.get(f"{urls['questions']}/questions", params={"topic": "acne"}, timeout=10)
    related = httpx.get(f"{urls['questions']}/questions/{qid}/related", timeout=10)
    assert page.json()["location"] == expected
    assert [q["location"] for q in listing.json()["items"] if q["id"] == qid] == [expected]
    assert "patient-home" not in page.text
    for reply in (posted, page, listing, related):
        assert reply.status_code == 200 or reply.status_code == 201
        assert not PRECISE.search(reply.text), reply.text

    # The event, read with plain XRANGE.
    entries = redis.xrange(streams.QUESTION_POSTED)
    (raw,) = [f["__data__"] for _, f in entries if json.loads(f["__data__"])["question_id"] == qid]
    assert not PRECISE.search(raw)
    assert json.loads(raw)["location"] == expected

    # The dead letters: answers gave up on the entry as received.
    def dead_lettered() -> list[str]:
        return [
            json.dumps(json.loads(f["__data__"]))
            for _, f in redis.xrange(streams.DEAD_LETTER)
            if qid in f["__data__"]
        ]

    letters = wait_for(dead_lettered, timeout=30, what="the question in the dead letters")
    for letter in letters:
        assert "34.05" in letter and not re.search(r"34\.05\d|118\.24\d", letter)

    # Matching is right on the coarse point: the doctor 10 km away is alerted.
    inbox = wait_for(
        lambda: httpx.get(
            f"{urls['notify']}/inbox", headers=auth("dr-near", "doctor"), timeout=10
        ).json()["items"],
        timeout=30,
        what="the near doctor's alert",
    )
    assert inbox[0]["question_id"] == qid
    assert inbox[0]["reason"]["distance_km"] < 2


def test_a_doctor_cannot_set_their_own_rating(world: dict[str, Any]) -> None:
    notify = world["urls"]["notify"]
    me = auth("dr-rated", "doctor")
    url = f"{notify}/doctors/dr-rated"
    created = httpx.put(url, json=doctor_body(name="Dr Rated"), headers=me, timeout=10)
    assert created.status_code == 200, created.text
    inflated = doctor_body(name="Dr Rated", rating=5.0, review_count=10_000_000)
    refused = httpx.put(url, json=inflated, headers=me, timeout=10)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "rating_set_by_admins"
    patched = httpx.patch(url, json={"rating": 5.0}, headers=me, timeout=10)
    assert patched.status_code == 403
    set_by_admin = httpx.patch(
        url, json={"rating": 4.2, "review_count": 31}, headers=auth("root", "admin"), timeout=10
    )
    assert set_by_admin.status_code == 200, set_by_admin.text
    card = httpx.get(url, timeout=10).json()
    assert (card["rating"], card["review_count"]) == (4.2, 31)
    # The doctor's own save without them (or with the card's values) keeps them.
    again = httpx.put(url, json=doctor_body(name="Dr Rated Again"), headers=me, timeout=10)
    assert again.status_code == 200 and again.json()["rating"] == 4.2
    same = doctor_body(name="Dr Rated", rating=4.2, review_count=31)
    assert httpx.put(url, json=same, headers=me, timeout=10).status_code == 200


def test_a_doctor_patches_alert_settings_and_a_reimport_keeps_them(
    world: dict[str, Any], tmp_path: Path
) -> None:
    notify = world["urls"]["notify"]
    url = f"{notify}/doctors/dr-import-1"
    csv = tmp_path / "doctors.csv"
    csv.write_text(
        "id,name,credentials,specialties,zip,rating,review_count\n"
        "dr-import-1,Imported One,MD,dermatology,90012,4.5,10\n"
    )
    command = [sys.executable, "-m", "askdoc_cli", "doctors", "import", str(csv)]
    env = {**os.environ, "ASKDOC_JWT_SECRET": JWT_SECRET, "ASKDOC_NOTIFY_URL": notify}
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr

    mine = auth("dr-import-1", "doctor")
    settings = {
        "quiet_hours": {"start": "22:00", "end": "07:00", "tz": "America/Los_Angeles"},
        "daily_cap": 7,
        "email": "one@clinic.example",
        "webhook_url": "http://127.0.0.1:9/hook",
        "webhook_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }
    patched = httpx.patch(url, json=settings, headers=mine, timeout=10)
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "Imported One" and patched.json()["rating"] == 4.5

    csv.write_text(
        "id,name,credentials,specialties,zip,rating,review_count\n"
        "dr-import-1,Imported One,MD FACS,dermatology,90012,4.7,12\n"
    )
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    profile = httpx.get(url, headers=mine, timeout=10).json()
    assert (profile["credentials"], profile["rating"], profile["review_count"]) == (
        "MD FACS",
        4.7,
        12,
    )
    assert profile["quiet_hours"] == settings["quiet_hours"]
    assert profile["daily_cap"] == 7 and profile["email"] == "one@clinic.example"
    assert profile["webhook_url"] == settings["webhook_url"] and profile["has_webhook_secret"]


@pytest.mark.parametrize("bad", ["a:b", "x{y}", "x y", "q%7Bt%7D", "-lead", "a" * 65])
def test_ids_in_paths_are_strict_on_every_service(world: dict[str, Any], bad: str) -> None:
    urls = world["urls"]
    patient, doctor = auth("p-ids"), auth("dr-ids", "doctor")
    paths = [
        ("GET", f"{urls['questions']}/questions/{bad}", None, {}),
        ("GET", f"{urls['questions']}/questions/{bad}/related", None, {}),
        ("GET", f"{urls['answers']}/questions/{bad}/answers", None, {}),
        ("GET", f"{urls['answers']}/answers/{bad}", None, {}),
        ("POST", f"{urls['answers']}/questions/{bad}/answers", {"body": "x" * 40}, doctor),
        ("GET", f"{urls['notify']}/doctors/{bad}", None, {}),
        ("PUT", f"{urls['notify']}/doctors/{bad}", doctor_body(), auth("root", "admin")),
        ("PATCH", f"{urls['notify']}/doctors/{bad}", {"daily_cap": 3}, auth("root", "admin")),
        ("POST", f"{urls['notify']}/inbox/{bad}/read", None, patient),
    ]
    before = set(world["server"].client().keys("*"))
    for method, url, body, headers in paths:
        reply = httpx.request(method, url, json=body, headers=headers, timeout=10)
        assert reply.status_code == 422, f"{method} {url}: {reply.status_code} {reply.text}"
        assert reply.json()["error"]["code"] == "invalid_request"
    new_keys = set(world["server"].client().keys("*")) - before
    assert not [k for k in new_keys if "{" in k.split("}", 1)[-1]], new_keys


def test_an_id_the_system_issues_passes_the_pattern(world: dict[str, Any]) -> None:
    urls = world["urls"]
    for doctor_id in ("dr-jon-a-perlman", "auth0|5f1c", "jane.doe@clinic.example", "Dr_X"):
        reply = httpx.get(f"{urls['notify']}/doctors/{doctor_id}", timeout=10)
        assert reply.status_code == 404, reply.text  # allowed, just not registered


def test_votes_ids_are_strict_too(world: dict[str, Any]) -> None:
    votes = world["urls"]["votes"]
    for bad in ("a:b", "x{y}"):
        get = httpx.get(f"{votes}/answers/{bad}/votes", timeout=10)
        put = httpx.put(f"{votes}/answers/{bad}/vote", json={"value": 1}, headers=auth("r-1"))
        assert (get.status_code, put.status_code) == (422, 422)


def test_anonymous_reads_are_limited_per_address_signed_in_ones_are_not() -> None:
    server = RedisServer().start()
    questions = ServiceProcess(
        "questions",
        server.url,
        ASKDOC_ANON_READ_LIMIT="5",
        ASKDOC_ANON_READ_WINDOW_S="60",
        ASKDOC_TRUSTED_PROXIES="127.0.0.1",
    ).start(timeout=90)
    try:
        url = f"{questions.url}/questions"
        for _ in range(5):
            assert httpx.get(url, timeout=10).status_code == 200
        limited = httpx.get(url, timeout=10)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limited"
        # Signed in (the web calls with the user's token): not counted.
        for _ in range(10):
            assert httpx.get(url, headers=auth("reader-x"), timeout=10).status_code == 200
        # Behind the trusted web, X-Forwarded-For names the browser: each its own budget.
        for n in range(3):
            forwarded = {"X-Forwarded-For": f"203.0.113.{n + 1}"}
            assert httpx.get(url, headers=forwarded, timeout=10).status_code == 200
        again = {"X-Forwarded-For": "203.0.113.1"}
        for _ in range(4):
            httpx.get(url, headers=again, timeout=10)
        assert httpx.get(url, headers=again, timeout=10).status_code == 429

        # The web passes each visitor on (X-Forwarded-For with its own peer appended):
        # one visitor spending their budget leaves another's page alone.
        web = ServiceProcess(
            "web", server.url, **{name: questions.url for name in BACKEND_URLS}
        ).start(timeout=90)
        try:
            for _ in range(5):
                page = httpx.get(web.url + "/", headers=_visitor(7), timeout=10)
                assert page.status_code == 200
            assert httpx.get(web.url + "/", headers=_visitor(7), timeout=10).status_code == 429
            assert httpx.get(web.url + "/", headers=_visitor(8), timeout=10).status_code == 200
        finally:
            web.terminate(10)
    finally:
        questions.terminate(10)
        server.cleanup()


BACKEND_URLS = (
    "ASKDOC_QUESTIONS_URL",
    "ASKDOC_ANSWERS_URL",
    "ASKDOC_VOTES_URL",
    "ASKDOC_NOTIFY_URL",
)


def _visitor(n: int) -> dict[str, str]:
    """A browser behind a proxy the web sits after (the web's own peer is loopback)."""
    return {"X-Forwarded-For": f"198.51.100.{n}"}


def test_urgent_floods_page_a_doctor_a_few_times_and_an_asker_a_few_times_a_day(
    world: dict[str, Any],
) -> None:
    urls = world["urls"]
    now = datetime.now(UTC)
    quiet = {
        "start": (now - timedelta(minutes=10)).strftime("%H:%M"),
        "end": (now + timedelta(hours=3)).strftime("%H:%M"),
        "tz": "UTC",
    }
    for doctor, extra in (("dr-night", {"quiet_hours": quiet}), ("dr-awake", {})):
        register_doctor(urls["notify"], doctor, name=doctor, specialties=["neurology"], **extra)

    def inbox(doctor: str) -> list[dict[str, Any]]:
        reply = httpx.get(f"{urls['notify']}/inbox", headers=auth(doctor, "doctor"), timeout=10)
        items: list[dict[str, Any]] = reply.json()["items"]
        return [i for i in items if i["question_id"] in qids]

    qids: list[str] = []
    for n in range(3):
        posted = httpx.post(
            f"{urls['questions']}/questions",
            json={
                "title": f"Sudden chest pain number {n}",
                "body": "sudden chest pain and my left arm is numb",
                "topics": ["acne"],
                "specialties": ["neurology"],
                "location": {"zip": "90012"},
            },
            headers=auth("p-flood"),
            timeout=10,
        )
        assert posted.status_code == 201, posted.text
        assert posted.json()["urgent"] is True and "911" in posted.json()["emergency_notice"]
        qids.append(posted.json()["id"])
        # One at a time, as a person posts them: each is matched before the next.
        awake = wait_for(lambda: len(inbox("dr-awake")) == len(qids) and inbox("dr-awake"))

    # The asker's third urgent question of the day alerts as routine.
    urgency = {i["question_id"]: i["urgent"] for i in awake}
    assert [urgency[q] for q in qids] == [True, True, False]
    # At night, one urgent page an hour; the rest wait (collapsed) for the morning.
    night = inbox("dr-night")
    assert [i["question_id"] for i in night] == [qids[0]], night
    # Every page still shows the emergency notice.
    page = httpx.get(f"{urls['questions']}/questions/{qids[2]}", timeout=10).json()
    assert page["urgent"] is True and "911" in page["emergency_notice"]
