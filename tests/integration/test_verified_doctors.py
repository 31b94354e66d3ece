"""Verified doctors: notify and answers as processes on real Redis, the CLI as a process.

Only a verified doctor is alerted and may answer; an admin verifies (API or
`askdoc doctors verify`) and suspends; every status change is a doctor-profile-changed.
Questions arrive on the stream as the questions service publishes them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import streams
from shared.events import Location, QuestionPosted
from tests.support import (
    JWT_SECRET,
    ROOT,
    RedisServer,
    ServiceProcess,
    admin_auth,
    auth,
    made_up_npi,
    verified,
    wait_for,
)

READY_S = 90  # a loaded machine can take long to import and warm up the gazetteer
PROFILE = {
    "name": "Dr Pending",
    "credentials": "MD",
    "specialties": ["dermatology"],
    "location": {"zip": "90012"},
    "radius_km": 50,
}
BODY = "A patch test finds the allergen; until then, fragrance-free soap and no new creams."


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Any]]:
    server = RedisServer().start()
    notify = ServiceProcess("notify", server.url)
    answers = ServiceProcess("answers", server.url)
    try:
        notify.start(wait_ready=False)
        answers.start(wait_ready=False)
        notify.wait_ready(READY_S)
        answers.wait_ready(READY_S)
        # A verified control doctor: their alert shows notify has handled a question.
        control = verified({**PROFILE, "name": "Dr Control"}, "dr-control")
        r = httpx.put(
            f"{notify.url}/doctors/dr-control", json=control, headers=admin_auth(), timeout=10
        )
        assert r.status_code == 200, r.text
        yield {"server": server, "notify": notify.url, "answers": answers.url}
    finally:
        notify.terminate(10)
        answers.terminate(10)
        server.cleanup()


def ask(server: RedisServer, question_id: str) -> None:
    event = QuestionPosted(
        correlation_id=f"corr-{question_id}",
        producer="questions",
        question_id=question_id,
        title="A rash that will not go away",
        body="It itches at night.",
        topics=[],
        specialties=["dermatology"],
        location=Location(city="Los Angeles", state="CA", lat=34.05, lon=-118.25),
        asker_id="patient-1",
    )
    server.client().xadd(streams.QUESTION_POSTED, event.to_wire())


def alerted(server: RedisServer, question_id: str) -> set[str]:
    entries = server.client().xrange(streams.NOTIFICATION_SENT, "-", "+")
    sent = [json.loads(fields["__data__"]) for _, fields in entries]
    return {
        e["recipient_id"]
        for e in sent
        if e["question_id"] == question_id and e["kind"] == "question-match"
    }


def handled(world: dict[str, Any], question_id: str) -> set[str]:
    """Who was alerted, once notify has handled the question (the control doctor heard)."""
    wait_for(
        lambda: "dr-control" in alerted(world["server"], question_id),
        timeout=20,
        what=f"notify to handle {question_id}",
    )
    return alerted(world["server"], question_id)


def answer(world: dict[str, Any], question_id: str, doctor_id: str) -> httpx.Response:
    url = f"{world['answers']}/questions/{question_id}/answers"
    wait_for(
        lambda: httpx.get(url, timeout=5).status_code == 200,
        timeout=20,
        what="answers to know the question",
    )
    return httpx.post(url, json={"body": BODY}, headers=auth(doctor_id, "doctor"), timeout=10)


def answers_sees(world: dict[str, Any], question_id: str, doctor_id: str, code: str) -> None:
    """Wait until the answers service's projection of the doctor refuses with `code`, or
    (code '') accepts; the profile event takes a moment to arrive."""

    def check() -> bool:
        r = answer(world, question_id, doctor_id)
        got = "" if r.status_code == 201 else r.json()["error"]["code"]
        return got == code

    wait_for(check, timeout=20, what=f"answers to see {doctor_id} as {code or 'verified'}")


def profile_events(server: RedisServer, doctor_id: str) -> list[dict[str, Any]]:
    entries = server.client().xrange(streams.DOCTOR_PROFILE_CHANGED, "-", "+")
    events = [json.loads(fields["__data__"]) for _, fields in entries]
    return [e for e in events if e["doctor_id"] == doctor_id]


def askdoc(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASKDOC_JWT_SECRET": JWT_SECRET}
    env.pop("ASKDOC_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "askdoc_cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_invalid_npi_is_refused(world: dict[str, Any]) -> None:
    me = auth("dr-typo", "doctor")
    good = made_up_npi("dr-typo")
    typo = good[:-1] + str((int(good[-1]) + 1) % 10)
    for bad in (typo, "12345", "abcdefghij"):
        r = httpx.put(
            f"{world['notify']}/doctors/dr-typo", json={**PROFILE, "npi": bad}, headers=me
        )
        assert r.status_code == 422, (bad, r.text)
    r = httpx.put(f"{world['notify']}/doctors/dr-typo", json={**PROFILE, "npi": typo}, headers=me)
    assert r.json()["error"]["code"] == "invalid_npi"
    bad_code = {**PROFILE, "npi": good, "taxonomy_code": "208200000"}
    r = httpx.put(f"{world['notify']}/doctors/dr-typo", json=bad_code, headers=me)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_taxonomy_code"
    assert httpx.get(f"{world['notify']}/doctors/dr-typo").status_code == 404


def test_only_admins_verify_and_only_with_an_npi(world: dict[str, Any]) -> None:
    url = f"{world['notify']}/doctors/dr-nonpi"
    me = auth("dr-nonpi", "doctor")
    assert httpx.put(url, json=PROFILE, headers=me).json()["status"] == "pending"
    own = httpx.put(url, json={**PROFILE, "status": "verified"}, headers=me)
    assert own.status_code == 403 and own.json()["error"]["code"] == "status_admin_only"
    by_self = httpx.put(f"{url}/status", json={"status": "verified"}, headers=me)
    assert by_self.status_code == 403
    no_npi = httpx.put(f"{url}/status", json={"status": "verified"}, headers=admin_auth())
    assert no_npi.status_code == 422 and no_npi.json()["error"]["code"] == "npi_required"
    unknown = httpx.put(f"{url}/status", json={"status": "famous"}, headers=admin_auth())
    assert unknown.status_code == 422
    assert httpx.get(url).json()["verified"] is False


def test_pending_verified_suspended_decide_alerts_and_answers(world: dict[str, Any]) -> None:
    server: RedisServer = world["server"]
    doctor, url = "dr-pending", f"{world['notify']}/doctors/dr-pending"
    npi = made_up_npi(doctor)
    mine = httpx.put(url, json={**PROFILE, "npi": npi}, headers=auth(doctor, "doctor")).json()
    assert mine["status"] == "pending" and mine["verified"] is False
    assert mine["npi"] == npi and mine["taxonomy_code"] == "207N00000X"

    # Pending: not alerted, may not answer.
    ask(server, "q-1")
    assert handled(world, "q-1") == {"dr-control"}
    answers_sees(world, "q-1", doctor, "doctor_not_verified")

    # Verified with the CLI: the card shows it, the event carries it, alerts and answers follow.
    done = askdoc("doctors", "verify", doctor, "--notify-url", world["notify"], "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "verified"
    card = httpx.get(url).json()
    assert card["verified"] is True and card["status"] == "verified"
    assert "email" not in card
    changes = profile_events(server, doctor)
    assert [e.get("status") for e in changes] == ["pending", "verified"]
    assert changes[-1]["profile_version"] == 2
    ask(server, "q-2")
    assert handled(world, "q-2") == {"dr-control", doctor}
    answers_sees(world, "q-1", doctor, "")
    posted = httpx.get(f"{world['answers']}/questions/q-1/answers").json()["items"]
    assert [a["doctor"]["verified"] for a in posted] == [True]

    # Suspended (API): no alerts, no answers; a doctor's own edit does not lift it.
    r = httpx.put(f"{url}/status", json={"status": "suspended"}, headers=admin_auth())
    assert r.status_code == 200 and r.json()["verified"] is False
    edit = httpx.put(url, json={**PROFILE, "radius_km": 60}, headers=auth(doctor, "doctor"))
    assert edit.json()["status"] == "suspended"
    assert profile_events(server, doctor)[-1]["status"] == "suspended"
    ask(server, "q-3")
    assert handled(world, "q-3") == {"dr-control"}
    answers_sees(world, "q-3", doctor, "doctor_not_verified")

    # And back: verified again (CLI), answers again.
    again = askdoc("doctors", "verify", doctor, "--notify-url", world["notify"])
    assert again.returncode == 0, again.stderr
    answers_sees(world, "q-3", doctor, "")
    ask(server, "q-4")
    assert handled(world, "q-4") == {"dr-control", doctor}

    # Suspended with the CLI too: the event says so, and answers refuse again.
    off = askdoc("doctors", "suspend", doctor, "--notify-url", world["notify"], "--json")
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout)["status"] == "suspended"
    assert httpx.get(url).json()["verified"] is False
    assert [e.get("status") for e in profile_events(server, doctor)][-2:] == [
        "verified",
        "suspended",
    ]
    answers_sees(world, "q-4", doctor, "doctor_not_verified")


def test_the_import_sets_npi_and_status(world: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "doctors.csv"
    path.write_text(
        "id,name,specialties,zip,npi,status\n"
        f"dr-imported,Dr Imported,dermatology,90012,{made_up_npi('dr-imported')},verified\n"
        "dr-bad-npi,Dr Bad,dermatology,90012,1234567890,verified\n"
    )
    result = askdoc("doctors", "import", str(path), "--notify-url", world["notify"], "--json")
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["imported"] == 1
    [rejected] = summary["rejected"]
    assert rejected["id"] == "dr-bad-npi" and rejected["status"] == 422
    card = httpx.get(f"{world['notify']}/doctors/dr-imported").json()
    assert card["verified"] is True and card["npi"] == made_up_npi("dr-imported")
