"""The seed page played over HTTP against running services (shared by e2e tests)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support import ROOT, auth, wait_for

SEED = json.loads((ROOT / "demo" / "seed_page.json").read_text())
SPECIALTY_BY_NUCC = {
    "208200000X": "plastic-surgery",
    "207N00000X": "dermatology",
    "207YS0123X": "facial-plastic-surgery",
    "207NS0135X": "procedural-dermatology",
    None: "physician",
}
# Votes that rank the answers in the seed page's order, and a case where a raw count
# would mislead: the last answer gets 1 of 1 helpful, the fifth 40 of 45.
VOTE_PLAN = [(50, 1), (45, 2), (44, 3), (42, 3), (40, 5), (1, 0)]


def doctor_id(name: str) -> str:
    """'Jon A. Perlman' -> 'dr-jon-a-perlman'."""
    return "dr-" + "-".join("".join(c for c in p if c.isalnum()) for p in name.lower().split())


def call(method: str, url: str, **kwargs: Any) -> Any:
    """An HTTP call that must succeed."""
    response = httpx.request(method, url, timeout=10, **kwargs)
    assert response.status_code < 400, f"{method} {url}: {response.status_code} {response.text}"
    return response.json()


def play_seed(urls: dict[str, str]) -> dict[str, Any]:
    """Doctors register, the patient asks, doctors answer, readers vote; the final page."""
    q, a, v, n = (urls[s] for s in ("questions", "answers", "votes", "notify"))
    doctors = []
    for answer in SEED["answers"]:
        card = answer["doctor"]
        did = doctor_id(card["name"])
        call(
            "PUT",
            f"{n}/doctors/{did}",
            headers=auth(did, "doctor", card["name"]),
            json={
                "name": card["name"],
                "credentials": card["credentials"],
                "specialties": [SPECIALTY_BY_NUCC[card["nucc_code"]]],
                "location": {"city": card["city"], "state": card["state"]},
                "radius_km": 50,
                "rating": card["rating"],
                "review_count": card["review_count"],
            },
        )
        doctors.append(did)
    asker = auth("patient-la", "patient", "Patient in LA")
    question = call(
        "POST", f"{q}/questions", headers=asker, json={**SEED["question"], "anonymous": True}
    )
    qid = question["id"]
    wait_for(
        lambda: httpx.get(f"{a}/questions/{qid}/answers").status_code == 200,
        what="answers projection",
    )
    answer_ids = []
    for did, answer in zip(doctors, SEED["answers"], strict=True):
        posted = wait_for(
            lambda did=did, answer=answer: _answer(a, qid, did, answer),
            what=f"{did} to be able to answer (doctor projection)",
        )
        answer_ids.append(posted["id"])
    reader = 0
    for aid, (helpful, unhelpful) in zip(answer_ids, VOTE_PLAN, strict=True):
        wait_for(
            lambda aid=aid: httpx.get(f"{v}/answers/{aid}/votes").status_code == 200,
            what="votes projection",
        )
        for value, count in ((1, helpful), (-1, unhelpful)):
            for _ in range(count):
                reader += 1
                call(
                    "PUT",
                    f"{v}/answers/{aid}/vote",
                    headers=auth(f"reader-{reader}"),
                    json={"value": value},
                )
    total = sum(h + u for h, u in VOTE_PLAN)

    def page_complete() -> dict[str, Any] | None:
        page = call("GET", f"{q}/questions/{qid}")
        votes = sum(x["helpful"] + x["unhelpful"] for x in page["answers"])
        return page if page["answer_count"] == 6 and votes == total else None

    page: dict[str, Any] = wait_for(
        page_complete, timeout=30, what="the page to show all answers and votes"
    )
    return {"page": page, "qid": qid, "doctors": doctors, "asker": asker}


def _answer(base: str, qid: str, did: str, answer: dict[str, Any]) -> Any:
    response = httpx.post(
        f"{base}/questions/{qid}/answers",
        headers={
            **auth(did, "doctor", answer["doctor"]["name"]),
            "Idempotency-Key": f"seed-{qid}-{did}",
        },
        json={"headline": answer["headline"], "body": answer["body"]},
        timeout=10,
    )
    if response.status_code == 403 and "directory" in response.text:
        return None
    assert response.status_code == 201, response.text
    return response.json()


def alerted(notify: str, doctors: list[str], qid: str) -> dict[str, dict[str, Any]]:
    """The question-match reasons of the doctors alerted of `qid` (each at most once)."""
    found = {}
    for did in doctors:
        inbox = call("GET", f"{notify}/inbox", headers=auth(did, "doctor"))
        items = [
            i for i in inbox["items"] if i["kind"] == "question-match" and i["question_id"] == qid
        ]
        assert len(items) <= 1, f"{did} alerted twice"
        if items:
            found[did] = items[0]["reason"]
    return found
