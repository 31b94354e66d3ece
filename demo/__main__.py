"""`make demo`: Redis, the four services and the seed page played end to end over HTTP.

Starts a throwaway redis-server (AOF on) and the four services as processes, registers
the six doctors of the seed page, posts the seed question as a patient in Los Angeles,
shows who was alerted and why, posts the six answers, lets readers vote, and prints the
question page as the seed shows it. `--keep` leaves everything running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from shared.auth import issue_token

ROOT = Path(__file__).resolve().parents[1]
SEED = json.loads((Path(__file__).parent / "seed_page.json").read_text())
PORTS = {"questions": 8001, "answers": 8002, "votes": 8003, "notify": 8004}
SPECIALTY_BY_NUCC = {
    "208200000X": "plastic-surgery",
    "207N00000X": "dermatology",
    "207YS0123X": "facial-plastic-surgery",
    "207NS0135X": "procedural-dermatology",
    None: "physician",
}
# Helpful/unhelpful votes per answer, in page order: the ranking reproduces the page.
VOTES = [(9, 0), (8, 1), (6, 1), (5, 1), (4, 1), (3, 1)]
OTHER_QUESTIONS = [
    ("Can fillers fix a lopsided smile after Bell's palsy?", ["fillers", "bells-palsy"]),
    ("Is Sculptra better than fillers for a sunken cheek?", ["sculptra", "fillers"]),
    ("How long does Botox last for jaw slimming?", ["botox"]),
]

console = Console()


def free_port(preferred: int) -> int:
    """`preferred` if it is free on loopback, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s, suppress(OSError):
            s.bind(("127.0.0.1", port))
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


def doctor_id(name: str) -> str:
    """A directory id from a doctor's name: 'Jon A. Perlman' -> 'dr-jon-a-perlman'."""
    return "dr-" + "-".join(
        "".join(c for c in part if c.isalnum()) for part in name.lower().split()
    )


class Demo:
    """The running system and an HTTP client speaking to it."""

    def __init__(self, stack: ExitStack, secret: str) -> None:
        self.stack = stack
        self.secret = secret
        self.http = stack.enter_context(httpx.Client(timeout=10))
        self.urls: dict[str, str] = {}
        self.procs: list[subprocess.Popen[bytes]] = []

    def token(self, sub: str, role: str, name: str = "") -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.secret, sub, role, name or sub)}"}

    def start_redis(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit(
                "redis-server is missing: run 'make install' (it installs Debian's redis-server)."
            )
        port = free_port(6390)
        data = self.stack.enter_context(tempfile.TemporaryDirectory(prefix="askdoc-demo-"))
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                data,
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
        )
        self._own(proc)
        url = f"redis://127.0.0.1:{port}/0"
        console.print(f"[bold]redis[/] AOF on, {url} (pid {proc.pid})")
        return url

    def start_services(self, redis_url: str, logs: Path) -> None:
        for name, preferred in PORTS.items():
            port = free_port(preferred)
            env = {
                **os.environ,
                "ASKDOC_REDIS_URL": redis_url,
                "ASKDOC_JWT_SECRET": self.secret,
                "ASKDOC_HTTP_PORT": str(port),
                "ASKDOC_HTTP_HOST": "127.0.0.1",
                "ASKDOC_LOG_FORMAT": "json",
            }
            log = (logs / f"{name}.log").open("ab")
            proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
            )
            self._own(proc)
            self.urls[name] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        for name, url in self.urls.items():
            while True:
                with suppress(httpx.HTTPError):
                    if self.http.get(f"{url}/readyz").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    sys.exit(f"{name} did not become ready; see {logs / (name + '.log')}")
                time.sleep(0.2)
            console.print(f"[bold]{name}[/] ready at {url}")

    def _own(self, proc: subprocess.Popen[bytes]) -> None:
        self.procs.append(proc)

        def stop() -> None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()

        self.stack.callback(stop)

    def call(self, method: str, service: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, self.urls[service] + path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    def until(self, what: str, check: Any, timeout: float = 15) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.1)
        raise RuntimeError(f"timed out waiting for {what}")


def register_doctors(demo: Demo) -> list[dict[str, Any]]:
    """The six seed doctors register in the directory."""
    doctors = []
    for answer in SEED["answers"]:
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
        }
        demo.call(
            "PUT",
            "notify",
            f"/doctors/{did}",
            json=profile,
            headers=demo.token(did, "doctor", card["name"]),
        )
        doctors.append({"id": did, **card})
    console.print(f"registered {len(doctors)} doctors: " + ", ".join(d["name"] for d in doctors))
    return doctors


def show_alerts(demo: Demo, doctors: list[dict[str, Any]], qid: str) -> None:
    """Who was alerted of the question, and why."""
    table = Table(title="Doctors alerted of the question (notify)")
    for column in ("doctor", "city", "specialty matched", "distance", "rank", "note"):
        table.add_column(column)
    time.sleep(1.0)
    for d in doctors:
        inbox = demo.call("GET", "notify", "/inbox", headers=demo.token(d["id"], "doctor"))
        items = [
            i for i in inbox["items"] if i["kind"] == "question-match" and i["question_id"] == qid
        ]
        if not items:
            table.add_row(d["name"], d["city"], "-", "-", "-", "not alerted (too far / no match)")
            continue
        reason = items[0]["reason"]
        note = f"search widened to {reason.get('radius_km')} km" if reason.get("widened") else ""
        table.add_row(
            d["name"],
            d["city"],
            str(reason.get("specialty")),
            f"{reason.get('distance_km')} km",
            str(reason.get("rank")),
            note,
        )
    console.print(table)


def post_answers_and_votes(demo: Demo, doctors: list[dict[str, Any]], qid: str) -> None:
    """Each doctor answers; readers vote."""
    demo.until(
        "the answers service to know the question and doctors", lambda: _answerable(demo, qid)
    )
    answer_ids = []
    for d, answer in zip(doctors, SEED["answers"], strict=True):
        posted = demo.call(
            "POST",
            "answers",
            f"/questions/{qid}/answers",
            json={"headline": answer["headline"], "body": answer["body"]},
            headers={
                **demo.token(d["id"], "doctor", d["name"]),
                "Idempotency-Key": f"answer-{qid}-{d['id']}",
            },
        )
        answer_ids.append(posted["id"])
    console.print(f"{len(answer_ids)} answers posted")
    reader = 0
    for answer_id, (helpful, unhelpful) in zip(answer_ids, VOTES, strict=True):
        demo.until(
            "votes to know the answer",
            lambda aid=answer_id: _status(demo, "votes", f"/answers/{aid}/votes") == 200,
        )
        for value, count in ((1, helpful), (-1, unhelpful)):
            for _ in range(count):
                reader += 1
                demo.call(
                    "PUT",
                    "votes",
                    f"/answers/{answer_id}/vote",
                    json={"value": value},
                    headers=demo.token(f"reader-{reader}", "patient"),
                )
    console.print(f"{reader} readers voted")
    total = sum(h + u for h, u in VOTES)
    demo.until("the page to show every vote", lambda: _page_votes(demo, qid) == total)


def _answerable(demo: Demo, qid: str) -> bool:
    return _status(demo, "answers", f"/questions/{qid}/answers") == 200


def _status(demo: Demo, service: str, path: str) -> int:
    return demo.http.get(demo.urls[service] + path).status_code


def _page_votes(demo: Demo, qid: str) -> int:
    page = demo.call("GET", "questions", f"/questions/{qid}")
    return (
        sum(a["helpful"] + a["unhelpful"] for a in page["answers"])
        if len(page["answers"]) == 6
        else -1
    )


def print_page(demo: Demo, qid: str) -> dict[str, Any]:
    """The question page, laid out as the seed page shows it."""
    page: dict[str, Any] = demo.call("GET", "questions", f"/questions/{qid}")
    related = demo.call("GET", "questions", f"/questions/{qid}/related")
    lines = [
        f"[bold]{page['title']}[/]",
        "",
        page["body"],
        "",
        f"[bold]Doctor Answers {page['answer_count']}[/]",
    ]
    for a in page["answers"]:
        d = a["doctor"]
        net = a["helpful"] - a["unhelpful"]
        lines += [
            "",
            f"[bold]{a.get('headline') or ''}[/]   [green]{'+' if net >= 0 else ''}{net}[/] "
            f"({a['helpful']} helpful, {a['unhelpful']} not)",
            a["body"],
            f"[cyan]{d['name']}, {d['credentials']}[/] — {d['city']}, {d['state']} · "
            f"{d['specialty']} · {d['rating']} out of 5 stars, {d['review_count']} reviews",
        ]
    if related["items"]:
        lines += ["", "[bold]You might also like...[/]"] + [
            f"  • {r['title']}" for r in related["items"]
        ]
    lines += ["", f"[dim]{page['disclaimer']}[/]"]
    console.print(Panel("\n".join(lines), title=f"GET /questions/{qid}", expand=False))
    return page


def run(keep: bool) -> None:
    secret = os.environ.get("ASKDOC_JWT_SECRET") or secrets.token_urlsafe(32)
    with ExitStack() as stack:
        demo = Demo(stack, secret)
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="askdoc-logs-")))
        if keep:
            logs = Path(tempfile.mkdtemp(prefix="askdoc-logs-"))
        redis_url = demo.start_redis()
        demo.start_services(redis_url, logs)
        doctors = register_doctors(demo)
        patient = demo.token("patient-la-1", "patient", "A patient in Los Angeles")
        for title, topics in OTHER_QUESTIONS:
            demo.call(
                "POST",
                "questions",
                "/questions",
                headers=patient,
                json={
                    "title": title,
                    "body": "Asked for the demo.",
                    "topics": topics,
                    "location": {"city": "Los Angeles", "state": "CA"},
                },
            )
        question = {**SEED["question"], "anonymous": True}
        posted = demo.call(
            "POST",
            "questions",
            "/questions",
            json=question,
            headers={**patient, "Idempotency-Key": "demo-seed-question"},
        )
        qid = posted["id"]
        console.print(f"patient in Los Angeles asked [bold]{qid}[/] (anonymous)")
        show_alerts(demo, doctors, qid)
        post_answers_and_votes(demo, doctors, qid)
        page = print_page(demo, qid)
        asker_inbox = demo.call("GET", "notify", "/inbox", headers=patient)
        answered = [i for i in asker_inbox["items"] if i["kind"] == "new-answer"]
        console.print(f"the asker's inbox has {len(answered)} new-answer alerts")
        ranking = [a["doctor"]["name"] for a in page["answers"]]
        expected = [a["doctor"]["name"] for a in SEED["answers"]]
        ok = page["answer_count"] == 6 and ranking == expected
        console.print(
            "[green]seed page reproduced[/]" if ok else f"[red]ranking differs: {ranking}[/]"
        )
        if keep:
            console.print(
                "services running: " + ", ".join(f"{k} {v}" for k, v in demo.urls.items())
            )
            console.print(f"logs in {logs}; Ctrl-C stops everything")
            with suppress(KeyboardInterrupt):
                signal.pause()
        if not ok:
            sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keep", action="store_true", help="keep Redis and the services running")
    args = parser.parse_args()
    run(args.keep)


if __name__ == "__main__":
    main()
