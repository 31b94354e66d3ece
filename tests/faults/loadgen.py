"""A burst of questions, answers and votes from many users, recording what was accepted.

Every write is retried (with the same Idempotency-Key) on connection errors and 5xx, as a
real client would, so a write whose reply was lost in a crash is neither lost nor doubled.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support import auth

CITY = {"city": "Los Angeles", "state": "CA"}
DOCTORS = [f"dr-fault-{n}" for n in range(5)]


@dataclass
class Ledger:
    """What the clients were told: the ground truth the system must match."""

    questions: dict[str, str] = field(default_factory=dict)  # question id -> asker
    answers: dict[str, tuple[str, str]] = field(
        default_factory=dict
    )  # answer -> (question, doctor)
    votes: dict[tuple[str, str], int] = field(default_factory=dict)  # (answer, voter) -> value
    failed: int = 0
    retried: int = 0
    requests: int = 0


@dataclass
class Burst:
    """The burst's targets and progress."""

    urls: dict[str, str]
    questions: int = 300
    answers_per_question: int = 2
    votes_per_answer: int = 2
    concurrency: int = 24
    ledger: Ledger = field(default_factory=Ledger)
    done: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    @property
    def total(self) -> int:
        q = self.questions
        return (
            q
            + q * self.answers_per_question
            + q * self.answers_per_question * self.votes_per_answer
        )

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        accept: Callable[[httpx.Response], bool],
        **kw: Any,
    ) -> httpx.Response | None:
        """Send until accepted, a final client error, or attempts run out."""
        for attempt in range(60):
            self.ledger.requests += 1
            try:
                response = await client.request(method, url, **kw)
            except httpx.HTTPError:
                response = None
            if response is not None and accept(response):
                return response
            if (
                response is not None
                and 400 <= response.status_code < 500
                and response.status_code not in (404, 429)
            ):
                return response
            if attempt:
                self.ledger.retried += 1
            await asyncio.sleep(0.25)
        self.ledger.failed += 1
        return None

    async def run(self, on_progress: Callable[[float], Awaitable[None]] | None = None) -> Ledger:
        """Post all questions, then their answers, then votes, concurrently per phase."""
        limits = httpx.Limits(max_connections=self.concurrency)
        async with httpx.AsyncClient(timeout=10, limits=limits) as client:
            sem = asyncio.Semaphore(self.concurrency)

            async def one(coro: Awaitable[None]) -> None:
                async with sem:
                    await coro
                self.done += 1
                if on_progress:
                    await on_progress(self.done / self.total)

            await asyncio.gather(*(one(self._question(client, n)) for n in range(self.questions)))
            qids = list(self.ledger.questions)
            jobs = [
                self._answer(client, qid, doctor)
                for qid in qids
                for doctor in self.rng.sample(DOCTORS, self.answers_per_question)
            ]
            await asyncio.gather(*(one(j) for j in jobs))
            aids = list(self.ledger.answers)
            jobs = [
                self._vote(client, aid, f"voter-{aid}-{k}")
                for aid in aids
                for k in range(self.votes_per_answer)
            ]
            await asyncio.gather(*(one(j) for j in jobs))
        return self.ledger

    async def _question(self, client: httpx.AsyncClient, n: int) -> None:
        asker = f"asker-{n}"
        response = await self._send(
            client,
            "POST",
            f"{self.urls['questions']}/questions",
            lambda r: r.status_code == 201,
            headers={**auth(asker), "Idempotency-Key": f"q-{n}"},
            json={
                "title": f"Question {n}: acne scars on my cheek",
                "body": "What helps?",
                "topics": ["acne"],
                "location": CITY,
            },
        )
        if response is not None and response.status_code == 201:
            self.ledger.questions[response.json()["id"]] = asker

    async def _answer(self, client: httpx.AsyncClient, qid: str, doctor: str) -> None:
        response = await self._send(
            client,
            "POST",
            f"{self.urls['answers']}/questions/{qid}/answers",
            lambda r: r.status_code == 201,
            headers={**auth(doctor, "doctor"), "Idempotency-Key": f"a-{qid}-{doctor}"},
            json={"body": f"An answer by {doctor}: see a dermatologist about it."},
        )
        if response is not None and response.status_code == 201:
            self.ledger.answers[response.json()["id"]] = (qid, doctor)

    async def _vote(self, client: httpx.AsyncClient, aid: str, voter: str) -> None:
        value = self.rng.choice((1, 1, -1))
        response = await self._send(
            client,
            "PUT",
            f"{self.urls['votes']}/answers/{aid}/vote",
            lambda r: r.status_code == 200,
            headers=auth(voter),
            json={"value": value},
        )
        if response is not None and response.status_code == 200:
            self.ledger.votes[(aid, voter)] = value
