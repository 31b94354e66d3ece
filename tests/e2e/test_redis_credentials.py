"""Redis that requires credentials: the four services and the CLI as processes, with the
credentials in ASKDOC_REDIS_URL, on a real redis-server with an ACL user (the default
user off) or with requirepass. No log line and no CLI output shows the password."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.support import (
    ROOT,
    RedisServer,
    ServiceProcess,
    admin_auth,
    auth,
    verified,
    wait_for,
)

# The four services that hold data (the web, if any, only calls them over HTTP).
BACKENDS = ["questions", "answers", "votes", "notify"]
ANSWER = "A small dose of toxin in the masseter evens the pull; see a specialist in person."


@pytest.fixture
def acl_redis() -> Iterator[tuple[RedisServer, str, str]]:
    """A redis-server whose only user is `askdoc` with a password; (server, url, password)."""
    password = secrets.token_hex(24)
    server = RedisServer().start()
    try:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "askdoc", "on", f">{password}", "~*", "&*", "+@all")
        admin.execute_command("ACL", "SETUSER", "default", "off")
        admin.close()
        yield server, f"redis://askdoc:{password}@127.0.0.1:{server.port}/0", password
    finally:
        server.cleanup()


def refuses_strangers(server: RedisServer) -> None:
    with pytest.raises(redis.exceptions.RedisError, match=r"(?i)auth"):
        redis.Redis(port=server.port, socket_connect_timeout=1).ping()


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "ASKDOC_REDIS_URL": url, "ASKDOC_LOG_FORMAT": "json"}
    return subprocess.run(
        [sys.executable, "-m", "askdoc_cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def start(names: list[str], url: str) -> dict[str, ServiceProcess]:
    """Start the services and wait until ready; stop them all if one never gets ready."""
    procs = {name: ServiceProcess(name, url) for name in names}
    try:
        for proc in procs.values():
            proc.start(wait_ready=False)
        for proc in procs.values():
            proc.wait_ready(timeout=120)  # several services loading at once on a busy machine
    except BaseException:
        for proc in procs.values():
            proc.terminate(10)
        raise
    return procs


def play(urls: dict[str, str]) -> dict[str, Any]:
    """A doctor registers, a patient asks, the doctor answers, a reader votes: every
    service writes and every consumer group reads, all through the credentialed URL."""
    http = httpx.Client(timeout=10)
    doctor = auth("dr-acl", "doctor", "Dr Acl")
    profile = {
        "name": "Dr Acl",
        "specialties": ["dermatology"],
        "location": {"city": "Los Angeles", "state": "CA"},
        "radius_km": 50,
    }
    registered = http.put(
        f"{urls['notify']}/doctors/dr-acl", json=verified(profile, "dr-acl"), headers=admin_auth()
    )
    assert registered.is_success
    question = {
        "title": "Uneven smile after a dental visit",
        "body": "One side of my smile pulls up. Is there an injection for it?",
        "topics": ["botox"],
        "location": {"city": "Los Angeles", "state": "CA"},
    }
    posted = http.post(f"{urls['questions']}/questions", json=question, headers=auth("p-acl"))
    assert posted.status_code == 201, posted.text
    qid = posted.json()["id"]

    def answer() -> httpx.Response | None:
        reply = http.post(
            f"{urls['answers']}/questions/{qid}/answers", json={"body": ANSWER}, headers=doctor
        )
        return None if reply.status_code in (403, 404) else reply

    answered = wait_for(answer, timeout=30, interval=0.2, what="answers to know the question")
    assert answered.status_code == 201, answered.text
    aid = answered.json()["id"]
    wait_for(
        lambda: http.get(f"{urls['votes']}/answers/{aid}/votes").status_code == 200,
        what="votes to know the answer",
    )
    voted = http.put(f"{urls['votes']}/answers/{aid}/vote", json={"value": 1}, headers=auth("r-1"))
    assert voted.status_code == 200, voted.text

    def page_complete() -> dict[str, Any] | None:
        page: dict[str, Any] = http.get(f"{urls['questions']}/questions/{qid}").json()
        answers = page.get("answers") or []
        return page if answers and answers[0]["helpful"] == 1 else None

    page = wait_for(page_complete, timeout=30, what="the page to show the answer and its vote")
    inbox = wait_for(
        lambda: http.get(f"{urls['notify']}/inbox", headers=doctor).json()["items"],
        timeout=30,
        what="the doctor's alert",
    )
    return {"page": page, "inbox": inbox, "qid": qid}


def test_services_and_cli_use_an_acl_user_and_never_log_its_password(
    acl_redis: tuple[RedisServer, str, str],
) -> None:
    server, url, password = acl_redis
    refuses_strangers(server)
    procs = start(BACKENDS, url)
    wrong = ServiceProcess("votes", url.replace(password, "not-" + password[4:]))
    try:
        played = play({name: p.url for name, p in procs.items()})
        assert played["page"]["answer_count"] == 1
        assert any(i["question_id"] == played["qid"] for i in played["inbox"])

        # The CLI, as a process, with the same URL.
        lag = cli(url, "lag", "--json")
        assert lag.returncode == 0, lag.stderr
        groups = {
            (s["stream"], g["group"])
            for s in json.loads(lag.stdout)["streams"]
            for g in s["groups"]
        }
        assert ("askdoc.question-posted", "notify") in groups
        table = cli(url, "lag")
        assert table.returncode == 0, table.stderr
        assert "askdoc.question-posted" in table.stdout
        dlq = cli(url, "dlq", "list")
        assert dlq.returncode == 0, dlq.stderr
        for output in (lag, table, dlq):
            assert password not in output.stdout + output.stderr

        # A wrong password: the service says so (URL masked), stays unready, keeps trying.
        wrong.start(wait_ready=False)
        line = wait_for(
            lambda: next(
                (
                    json.loads(x)
                    for x in wrong.logs().splitlines()
                    if '"redis_unreachable"' in x and "attempt" in x
                ),
                None,
            ),
            timeout=60,
            what="the wrong-password service to log redis_unreachable",
        )
        assert line["redis_url"] == f"redis://askdoc:***@127.0.0.1:{server.port}/0"
        assert "Authentication" in line["error"] or "WRONGPASS" in line["error"]
        assert httpx.get(f"{wrong.url}/readyz", timeout=5).status_code == 503
        assert password[4:] not in wrong.logs()
    finally:
        wrong.terminate(10)
        for proc in procs.values():
            proc.terminate(10)
    for name, proc in procs.items():
        logs = proc.logs()
        assert logs, name
        assert password not in logs, f"{name} logged the Redis password"


def test_a_requirepass_redis_works_too() -> None:
    password = secrets.token_hex(24)
    server = RedisServer().start()
    url = f"redis://:{password}@127.0.0.1:{server.port}/0"
    try:
        # requirepass set once the server answers (tests.support pings without a password).
        server.client().config_set("requirepass", password)
        refuses_strangers(server)
        procs = start(["questions"], url)
        try:
            posted = httpx.post(
                f"{procs['questions'].url}/questions",
                json={
                    "title": "Cheek pulled to the side",
                    "body": "Is there a fix?",
                    "topics": ["botox"],
                },
                headers=auth("p-pass"),
                timeout=10,
            )
            assert posted.status_code == 201, posted.text
            lag = cli(url, "lag", "--json")
            assert lag.returncode == 0, lag.stderr
            assert password not in lag.stdout + lag.stderr
        finally:
            procs["questions"].terminate(10)
        assert password not in procs["questions"].logs()
    finally:
        server.cleanup()
