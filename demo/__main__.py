"""`make demo`: Redis, the five services and the seed page played end to end over HTTP.

Starts a throwaway redis-server (AOF on) and the services (the web with its development
sign-in on) as processes, registers
the six doctors of the seed page, posts the seed question as a patient in Los Angeles,
shows who was alerted and why, posts the six answers, lets readers vote, and prints the
question page as the seed shows it, with the URLs of that page and of a seed doctor's
inbox in the browser. `--keep` leaves everything running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
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

from askdoc_cli import launcher
from askdoc_cli.launcher import SERVICES
from demo.scenario import SEED, SeedPlayer, ranking_matches_seed, until
from shared.auth import issue_token

OTHER_QUESTIONS = [
    ("Can fillers fix a lopsided smile after Bell's palsy?", ["fillers", "bells-palsy"]),
    ("Is Sculptra better than fillers for a sunken cheek?", ["sculptra", "fillers"]),
    ("How long does Botox last for jaw slimming?", ["botox"]),
]

console = Console()


class Demo:
    """The running system and an HTTP client speaking to it."""

    def __init__(self, stack: ExitStack, secret: str) -> None:
        self.stack = stack
        self.secret = secret
        self.http = stack.enter_context(httpx.Client(timeout=10))
        self.urls: dict[str, str] = {}
        self.children: list[launcher.Child] = []
        self.data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="askdoc-demo-")))
        # Registered after the directories, so everything stops before they go.
        stack.callback(lambda: launcher.stop_all(self.children, timeout=15))

    def token(self, sub: str, role: str, name: str = "") -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.secret, sub, role, name or sub)}"}

    def start_redis(self) -> str:
        try:
            server = launcher.RedisProcess(
                port=launcher.free_port(6390), data_dir=self.data, appendonly=True, own_session=True
            )
            self.children.append(server)
            server.start()
        except launcher.LaunchError as exc:
            sys.exit(str(exc))
        console.print(f"[bold]redis[/] AOF on, {server.url} (pid {server.pid})")
        return server.url

    def start_services(self, redis_url: str, logs: Path) -> None:
        ports = {name: launcher.free_port(spec.port) for name, spec in SERVICES.items()}
        services = launcher.start_services(
            SERVICES,
            redis_url,
            self.secret,
            ports,
            # The backends trust the web (all on loopback): each visitor its own read budget.
            env={
                "ASKDOC_LOG_FORMAT": "json",
                "ASKDOC_WEB_DEV_LOGIN": "true",
                "ASKDOC_TRUSTED_PROXIES": "127.0.0.1",
            },
            output=lambda name: logs / f"{name}.log",
            own_session=True,
        )
        self.children.extend(services.values())
        self.urls = {name: service.url for name, service in services.items()}
        try:
            launcher.wait_ready(
                services.values(),
                timeout=60,
                on_ready=lambda s: console.print(f"[bold]{s.name}[/] ready at {s.url}"),
            )
        except launcher.LaunchError as exc:
            sys.exit(f"{str(exc).splitlines()[0]}; see the logs in {logs}")

    def call(self, method: str, service: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, self.urls[service] + path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()


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


def show_alerts(player: SeedPlayer, doctors: list[str], qid: str) -> None:
    """Who was alerted of the question, and why."""
    found = until("notify to alert the nearby doctors", lambda: player.alerted(doctors, qid))
    time.sleep(0.5)
    found = player.alerted(doctors, qid)
    table = Table(title="Doctors alerted of the question (notify)")
    for column in ("doctor", "city", "specialty matched", "distance", "rank", "note"):
        table.add_column(column)
    for did, answer in zip(doctors, SEED["answers"], strict=True):
        card = answer["doctor"]
        reason = found.get(did)
        if reason is None:
            table.add_row(
                card["name"], card["city"], "-", "-", "-", "not alerted: too far for any widening"
            )
            continue
        note = f"search widened to {reason.get('radius_km')} km" if reason.get("widened") else ""
        table.add_row(
            card["name"],
            card["city"],
            str(reason.get("specialty")),
            f"{reason.get('distance_km')} km",
            str(reason.get("rank")),
            note,
        )
    console.print(table)


def show_web(web: str, qid: str, keep: bool) -> None:
    """Where to see it all in a browser: the seed page, and a seed doctor's live inbox."""
    lines = [
        "[bold]In your browser[/] (the web, with its development sign-in):",
        f"  the seed question page   {web}/questions/{qid}",
        f"  Jason Emer's live inbox  {web}/signin?next=/inbox  (press 'Sign in as Jason Emer')",
        f"  ask a question           {web}/signin?next=/ask  "
        "(press 'Sign in as A patient in Los Angeles')",
    ]
    for line in lines:
        # Whole URLs on one line, whatever the terminal's width.
        console.print(line, soft_wrap=True, highlight=False)
    if not keep:
        console.print("[dim]run `.venv/bin/python -m demo --keep` to leave them up[/]")


def run(keep: bool) -> None:
    secret = os.environ.get("ASKDOC_JWT_SECRET") or secrets.token_urlsafe(32)
    with ExitStack() as stack:
        logs = (
            Path(tempfile.mkdtemp(prefix="askdoc-logs-"))
            if keep
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="askdoc-logs-")))
        )
        demo = Demo(stack, secret)
        redis_url = demo.start_redis()
        demo.start_services(redis_url, logs)
        player = SeedPlayer(demo.urls, lambda sub, role, name: issue_token(secret, sub, role, name))
        doctors = player.register_doctors()
        console.print(f"registered {len(doctors)} doctors in the directory")
        patient = player.auth("patient-la", "patient", "A patient in Los Angeles")
        for title, topics in OTHER_QUESTIONS:
            player.call(
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
        qid = player.ask("patient-la")
        console.print(f"a patient in Los Angeles asked [bold]{qid}[/] (anonymously)")
        show_alerts(player, doctors, qid)
        answers = player.answer_all(doctors, qid)
        console.print(f"{len(answers)} answers posted")
        votes = player.vote(answers)
        console.print(f"{votes} readers voted")
        page = player.page_when_complete(qid, votes)
        print_page(demo, qid)
        inbox = until(
            "the asker's new-answer alerts",
            lambda: [
                i
                for i in player.call("GET", "notify", "/inbox?limit=50", headers=patient)["items"]
                if i["kind"] == "new-answer"
            ],
        )
        console.print(f"the asker's inbox has {len(inbox)} new-answer alerts")
        ok = page["answer_count"] == len(SEED["answers"]) and ranking_matches_seed(page)
        console.print(
            "[green]seed page reproduced[/]" if ok else "[red]the ranking differs from the seed[/]"
        )
        show_web(demo.urls["web"], qid, keep)
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
