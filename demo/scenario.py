"""The seed page played over the HTTP API alone (used by `make demo` and the e2e tests)."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from services.notify.directory.domain import npi_check_digit

SEED: dict[str, Any] = json.loads((Path(__file__).parent / "seed_page.json").read_text())
SPECIALTY_BY_NUCC = {
    "208200000X": "plastic-surgery",
    "207N00000X": "dermatology",
    "207YS0123X": "facial-plastic-surgery",
    "207NS0135X": "procedural-dermatology",
    None: "physician",
}
# Helpful/unhelpful votes per answer in the seed page's order. The ranking reproduces the
# page, and shows that confidence beats raw counts: 40 of 45 outranks 1 of 1.
VOTE_PLAN = [(50, 1), (45, 2), (44, 3), (42, 3), (40, 5), (1, 0)]
Token = Callable[[str, str, str], str]
ADMIN = "admin-demo"


def demo_npi(index: int) -> str:
    """A made-up NPI for the demo's doctor number `index` (valid check digit, no real person)."""
    first = f"29999{index:04d}"
    return first + npi_check_digit(first)


def doctor_id(name: str) -> str:
    """A directory id from a doctor's name: 'Jon A. Perlman' -> 'dr-jon-a-perlman'."""
    return "dr-" + "-".join("".join(c for c in p if c.isalnum()) for p in name.lower().split())


def until(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


class SeedPlayer:
    """Plays the seed page against running services."""

    def __init__(self, urls: dict[str, str], token: Token) -> None:
        self.urls = urls
        self.token = token
        self.http = httpx.Client(timeout=10)

    def auth(self, sub: str, role: str, name: str = "") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub, role, name or sub)}"}

    def call(self, method: str, service: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, self.urls[service] + path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    def status(self, service: str, path: str) -> int:
        return self.http.get(self.urls[service] + path).status_code

    def _known(self, service: str, path: str) -> bool:
        return self.status(service, path) == 200

    def register_doctors(self) -> list[str]:
        """The six seed doctors go into the directory as the import puts them; an admin
        verifies them.

        An admin writes the profiles: ratings and review counts are set by admins (or the
        import), never by the doctor.
        """
        ids = []
        for number, answer in enumerate(SEED["answers"], start=1):
            card = answer["doctor"]
            did = doctor_id(card["name"])
            profile = {
                "name": card["name"],
                "credentials": card["credentials"],
                "specialties": [SPECIALTY_BY_NUCC[card["nucc_code"]]],
                "location": {"city": card["city"], "state": card["state"]},
                "radius_km": 50,
                "rating": card["rating"],
                "review_count": card["review_count"],
                "npi": demo_npi(number),
            }
            if card["nucc_code"]:
                profile["taxonomy_code"] = card["nucc_code"]
            self.call(
                "PUT",
                "notify",
                f"/doctors/{did}",
                json=profile,
                headers=self.auth(ADMIN, "admin", "Demo Admin"),
            )
            self.call(
                "PUT",
                "notify",
                f"/doctors/{did}/status",
                json={"status": "verified"},
                headers=self.auth(ADMIN, "admin", "Demo Admin"),
            )
            ids.append(did)
        return ids

    def ask(self, asker: str) -> str:
        """The patient in Los Angeles asks the seed question, anonymously."""
        question = {**SEED["question"], "anonymous": True}
        headers = {
            **self.auth(asker, "patient", "A patient in Los Angeles"),
            "Idempotency-Key": "seed-question",
        }
        posted: dict[str, Any] = self.call(
            "POST", "questions", "/questions", json=question, headers=headers
        )
        return str(posted["id"])

    def alerted(self, doctors: list[str], qid: str) -> dict[str, dict[str, Any]]:
        """The question-match reasons of the doctors alerted of `qid`."""
        found: dict[str, dict[str, Any]] = {}
        for did in doctors:
            inbox = self.call("GET", "notify", "/inbox", headers=self.auth(did, "doctor"))
            items = [
                i
                for i in inbox["items"]
                if i["kind"] == "question-match" and i["question_id"] == qid
            ]
            if len(items) > 1:
                raise AssertionError(f"{did} alerted twice")
            if items:
                found[did] = items[0]["reason"]
        return found

    def answer_all(self, doctors: list[str], qid: str) -> list[str]:
        """Each doctor posts their answer from the seed page."""
        until(
            "the answers service to know the question",
            lambda: self.status("answers", f"/questions/{qid}/answers") == 200,
        )
        ids = []
        for did, answer in zip(doctors, SEED["answers"], strict=True):
            posted = until(
                f"{did} to be in the answers service's directory",
                functools.partial(self._answer, qid, did, answer),
            )
            ids.append(posted["id"])
        return ids

    def _answer(self, qid: str, did: str, answer: dict[str, Any]) -> Any:
        headers = {
            **self.auth(did, "doctor", answer["doctor"]["name"]),
            "Idempotency-Key": f"seed-{qid}-{did}",
        }
        body = {"headline": answer["headline"], "body": answer["body"]}
        response = self.http.post(
            f"{self.urls['answers']}/questions/{qid}/answers", headers=headers, json=body
        )
        if response.status_code == 403 and (
            "directory" in response.text or "doctor_not_verified" in response.text
        ):
            return None  # the doctor's profile (or its verification) is still on its way
        if response.status_code != 201:
            raise RuntimeError(f"answer by {did}: {response.status_code} {response.text}")
        return response.json()

    def vote(self, answer_ids: list[str]) -> int:
        """Readers vote as planned; returns how many votes were cast."""
        reader = 0
        for aid, (helpful, unhelpful) in zip(answer_ids, VOTE_PLAN, strict=True):
            until(
                "the votes service to know the answer",
                functools.partial(self._known, "votes", f"/answers/{aid}/votes"),
            )
            for value, count in ((1, helpful), (-1, unhelpful)):
                for _ in range(count):
                    reader += 1
                    self.call(
                        "PUT",
                        "votes",
                        f"/answers/{aid}/vote",
                        json={"value": value},
                        headers=self.auth(f"reader-{reader}", "patient"),
                    )
        return reader

    def page_when_complete(self, qid: str, votes: int) -> dict[str, Any]:
        """The question page once it shows all six answers and every vote."""

        def complete() -> dict[str, Any] | None:
            page: dict[str, Any] = self.call("GET", "questions", f"/questions/{qid}")
            seen = sum(a["helpful"] + a["unhelpful"] for a in page["answers"])
            return page if page["answer_count"] == len(SEED["answers"]) and seen == votes else None

        page: dict[str, Any] = until("the page to show all answers and votes", complete)
        return page

    def play(self, asker: str = "patient-la") -> dict[str, Any]:
        """The whole seed scenario; returns the page and what led to it."""
        doctors = self.register_doctors()
        qid = self.ask(asker)
        answers = self.answer_all(doctors, qid)
        votes = self.vote(answers)
        return {
            "page": self.page_when_complete(qid, votes),
            "qid": qid,
            "doctors": doctors,
            "asker": asker,
        }


def ranking_matches_seed(page: dict[str, Any]) -> bool:
    """Whether the page ranks the answers as the seed page orders them."""
    return [a["doctor"]["name"] for a in page["answers"]] == [
        a["doctor"]["name"] for a in SEED["answers"]
    ]
