"""The askdoc CLI against a real redis-server (and real services for import and dev)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis
from typer.testing import CliRunner, Result

from askdoc_cli import launcher
from askdoc_cli.dlq import REPLAYED_KEY
from askdoc_cli.main import app
from shared import streams
from shared.auth import decode_token
from shared.events import DeadLetter, QuestionPosted, VoteCast
from shared.relay import GROUP as RELAY_GROUP
from shared.relay import STREAM_FIELD, outbox_key
from tests.support import JWT_SECRET, ROOT, ServiceProcess, free_port, wait_for

runner = CliRunner()


def cli(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return runner.invoke(app, list(args), env=env)


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def question(n: int) -> QuestionPosted:
    return QuestionPosted(
        correlation_id=f"corr-{n}",
        producer="questions",
        question_id=f"q-{n}",
        title="Cheek pulled to the side",
        body="Is there a treatment?",
        topics=["facial-asymmetry"],
        specialties=["dermatology"],
        asker_id="patient-1",
    )


def post_questions(r: redis.Redis, n: int) -> list[str]:
    return [str(r.xadd(streams.QUESTION_POSTED, question(i).to_wire())) for i in range(n)]


def group_row(report: dict[str, Any], stream: str, group: str) -> dict[str, Any]:
    (entry,) = [s for s in report["streams"] if s["stream"] == stream]
    (row,) = [g for g in entry["groups"] if g["group"] == group]
    return row


# --- token ------------------------------------------------------------------------------


def test_token_decodes_with_the_secret() -> None:
    result = cli("token", "--role", "doctor", "--sub", "dr-jon", "--name", "Jon", "--ttl", "120")
    assert result.exit_code == 0, result.output
    raw = result.stdout.strip()
    principal = decode_token(JWT_SECRET, raw)
    assert (principal.sub, principal.role, principal.name) == ("dr-jon", "doctor", "Jon")
    claims = jwt.decode(raw, JWT_SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 120


def test_token_refuses_without_the_secret() -> None:
    result = cli("token", "--role", "admin", "--sub", "ops", env={"ASKDOC_JWT_SECRET": None})
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "ASKDOC_JWT_SECRET is not set" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_token_rejects_an_unknown_role_as_usage() -> None:
    assert cli("token", "--role", "nurse", "--sub", "x").exit_code == 2


# --- lag --------------------------------------------------------------------------------


def test_lag_shows_a_groups_pending_and_lag(redis_url: str) -> None:
    r = client(redis_url)
    post_questions(r, 5)
    r.xgroup_create(streams.QUESTION_POSTED, "answers", id="0")
    r.xreadgroup("answers", "answers-1", {streams.QUESTION_POSTED: ">"}, count=3)

    result = cli("lag", "--redis-url", redis_url, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    row = group_row(report, streams.QUESTION_POSTED, "answers")
    assert row["length"] == 5 and row["pending"] == 3 and row["lag"] == 2
    assert row["consumers"] == 1 and row["behind_retention"] is False
    assert row["oldest_pending_idle_ms"] is not None and row["oldest_pending_idle_ms"] >= 0
    assert report["behind_retention"] is False

    plain = cli("lag", "--redis-url", redis_url)
    assert plain.exit_code == 0
    lines = plain.stdout.splitlines()
    assert lines[0].split("\t")[:5] == ["stream", "group", "length", "pending", "lag"]
    assert any(line.startswith("askdoc.question-posted\tanswers\t5\t3\t2\t") for line in lines)
    # Every stream is listed, with or without groups.
    assert all(any(line.startswith(s + "\t") for line in lines) for s in streams.ALL)


def test_lag_lists_a_relay_outbox_with_its_pending_entries_when_there_is_one(
    redis_url: str,
) -> None:
    r = client(redis_url)
    outbox = outbox_key(streams.slot_tag(streams.HOME_STREAM["questions"]))
    before = json.loads(cli("lag", "--redis-url", redis_url, "--json").stdout)
    assert outbox not in [s["stream"] for s in before["streams"]]  # standalone: no outbox

    # An outbox as the relay keeps it: events waiting to reach their streams.
    for n in range(4):
        r.xadd(outbox, {STREAM_FIELD: streams.QUESTION_EDITED, "__data__": f'{{"n": {n}}}'})
    r.xgroup_create(outbox, RELAY_GROUP, id="0")
    r.xreadgroup(RELAY_GROUP, "relay-1", {outbox: ">"}, count=3)
    report = json.loads(cli("lag", "--redis-url", redis_url, "--json").stdout)
    row = group_row(report, outbox, RELAY_GROUP)
    assert (row["length"], row["pending"], row["lag"]) == (4, 3, 1)
    plain = cli("lag", "--redis-url", redis_url)
    assert plain.exit_code == 0
    assert any(line.startswith(f"{outbox}\trelay\t4\t3\t1\t") for line in plain.stdout.splitlines())
    # Other services' outboxes do not exist here, and are not listed.
    listed = {s["stream"] for s in report["streams"]}
    assert listed == {*streams.ALL, outbox}


def test_lag_reports_a_group_behind_retention_after_a_trim(redis_url: str) -> None:
    r = client(redis_url)
    ids = post_questions(r, 5)
    r.xgroup_create(streams.QUESTION_POSTED, "answers", id="0")
    r.xreadgroup("answers", "answers-1", {streams.QUESTION_POSTED: ">"}, count=2)
    # Trim past the group's last delivered id: ids[2] is gone before the group read it.
    r.xtrim(streams.QUESTION_POSTED, minid=ids[3], approximate=False)

    plain = cli("lag", "--redis-url", redis_url)
    assert plain.exit_code == 0
    (line,) = [x for x in plain.stdout.splitlines() if "\tanswers\t" in x]
    assert "behind retention" in line
    assert "behind retention" in plain.stderr

    report = json.loads(cli("lag", "--redis-url", redis_url, "--json").stdout)
    row = group_row(report, streams.QUESTION_POSTED, "answers")
    assert row["behind_retention"] is True and row["lost_unread"] == 1
    assert report["behind_retention"] is True
    assert cli("lag", "--redis-url", redis_url, "--fail-on-behind").exit_code == 1


def test_lag_is_unknown_and_behind_when_redis_cannot_count(redis_url: str) -> None:
    r = client(redis_url)
    ids = post_questions(r, 6)
    r.xgroup_create(streams.QUESTION_POSTED, "notify", id="0")
    r.xreadgroup("notify", "notify-1", {streams.QUESTION_POSTED: ">"}, count=2)
    r.xtrim(streams.QUESTION_POSTED, minid=ids[3], approximate=False)
    r.xdel(streams.QUESTION_POSTED, ids[4])  # a tombstone: Redis reports no lag at all

    assert r.xinfo_groups(streams.QUESTION_POSTED)[0]["lag"] is None
    result = cli("lag", "--redis-url", redis_url, "--fail-on-behind")
    assert result.exit_code == 1
    (line,) = [x for x in result.stdout.splitlines() if "\tnotify\t" in x]
    assert "unknown (behind retention)" in line


def test_lag_without_redis_fails_in_one_line() -> None:
    result = cli("lag", "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    assert result.exit_code == 1
    assert "cannot reach Redis" in result.stderr


# --- events tail ------------------------------------------------------------------------


def test_events_tail_prints_the_events_added(redis_url: str) -> None:
    r = client(redis_url)
    post_questions(r, 2)
    r.xadd(streams.QUESTION_POSTED, {"not": "an event"})

    result = cli("events", "tail", "question-posted", "--from-start", "--count", "3",
                 "--redis-url", redis_url)  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for n, line in enumerate(lines[:2]):
        assert "question-posted" in line
        assert f"question_id=q-{n}" in line and f"correlation_id=corr-{n}" in line
        assert "Is there a treatment" not in line  # no bodies in the readable line
    assert "malformed entry" in lines[2]

    as_json = cli("events", "tail", "askdoc.question-posted", "--from-start", "-n", "2",
                  "--json", "--redis-url", redis_url)  # fmt: skip
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [rec["event"]["question_id"] for rec in records] == ["q-0", "q-1"]
    # A tail reads outside every consumer group.
    assert r.xinfo_groups(streams.QUESTION_POSTED) == []


def test_events_tail_follows_new_events_live(redis_url: str) -> None:
    r = client(redis_url)
    post_questions(r, 1)  # an old event, which a live tail must not print
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "askdoc_cli",
            "events",
            "tail",
            "vote-cast",
            "--count",
            "1",
            "--redis-url",
            redis_url,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert "following askdoc.vote-cast" in proc.stderr.readline()
        vote = VoteCast(
            correlation_id="corr-vote",
            producer="votes",
            answer_id="a-1",
            question_id="q-1",
            doctor_id="dr-1",
            voter_id="reader-1",
            value=1,
            helpful=1,
            unhelpful=0,
            tally_version=1,
        )
        r.xadd(streams.VOTE_CAST, vote.to_wire())
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "vote-cast" in out and "answer_id=a-1" in out and "correlation_id=corr-vote" in out


def test_events_tail_refuses_an_unknown_stream() -> None:
    result = cli("events", "tail", "questions", "--count", "1")
    assert result.exit_code == 2
    assert "unknown stream" in result.output


# --- dlq --------------------------------------------------------------------------------


def dead_letter(r: redis.Redis, event: QuestionPosted, group: str, error: str) -> str:
    letter = DeadLetter(
        correlation_id=event.correlation_id,
        producer=group,
        source_stream=streams.QUESTION_POSTED,
        entry_id="1-0",
        group=group,
        consumer=f"{group}-1",
        fields=event.to_wire(),
        error=error,
        delivery_count=5,
    )
    return str(r.xadd(streams.DEAD_LETTER, letter.to_wire()))


def test_dlq_list_and_replay(redis_url: str) -> None:
    r = client(redis_url)
    first = question(1)
    first_id = dead_letter(r, first, "answers", "KeyError: 'doctor'")

    listed = cli("dlq", "list", "--redis-url", redis_url, "--json")
    assert listed.exit_code == 0, listed.output
    (item,) = json.loads(listed.stdout)
    assert item["id"] == first_id and item["group"] == "answers"
    assert item["source_stream"] == streams.QUESTION_POSTED
    assert item["error"] == "KeyError: 'doctor'" and item["deliveries"] == 5
    assert item["replayed"] is None
    plain = cli("dlq", "list", "--redis-url", redis_url)
    assert first_id in plain.stdout and "KeyError" in plain.stdout

    replayed = cli("dlq", "replay", first_id, "--redis-url", redis_url)
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1 dead letter" in replayed.stderr
    entries = r.xrange(streams.QUESTION_POSTED)
    assert len(entries) == 1 and entries[0][1] == first.to_wire()
    assert f"replayed as {entries[0][0]}" in replayed.stdout
    assert r.xlen(streams.DEAD_LETTER) == 1  # kept, and marked replayed
    assert json.loads(r.hget(REPLAYED_KEY, first_id) or "{}")["new_entry_id"] == entries[0][0]

    second = question(2)
    second_id = dead_letter(r, second, "notify", "TimeoutError")
    newest = json.loads(cli("dlq", "list", "--redis-url", redis_url, "--json").stdout)
    assert [x["id"] for x in newest] == [second_id, first_id]  # newest first
    assert newest[1]["replayed"]["new_entry_id"] == entries[0][0]

    everything = cli("dlq", "replay", "--all", "--json", "--redis-url", redis_url)
    assert everything.exit_code == 0, everything.output
    outcome = json.loads(everything.stdout)
    assert [x["id"] for x in outcome["replayed"]] == [second_id]
    assert [x["id"] for x in outcome["skipped"]] == [first_id]
    assert r.xrange(streams.QUESTION_POSTED)[-1][1] == second.to_wire()

    again = cli("dlq", "replay", "--all", "--json", "--redis-url", redis_url)
    assert again.exit_code == 0
    assert json.loads(again.stdout)["replayed"] == []
    assert r.xlen(streams.QUESTION_POSTED) == 2


def test_dlq_replay_of_one_group_and_of_unknown_ids(redis_url: str) -> None:
    r = client(redis_url)
    dead_letter(r, question(1), "answers", "boom")
    notify_id = dead_letter(r, question(2), "notify", "boom")

    only = cli("dlq", "replay", "--all", "--group", "notify", "--json", "--redis-url", redis_url)
    assert [x["id"] for x in json.loads(only.stdout)["replayed"]] == [notify_id]

    missing = cli("dlq", "replay", "1-0", "--redis-url", redis_url)
    assert missing.exit_code == 1 and "no such dead letter" in missing.stdout
    assert cli("dlq", "replay", "--redis-url", redis_url).exit_code == 2
    assert cli("dlq", "replay", "not-an-id", "--redis-url", redis_url).exit_code == 2


# --- doctors import ---------------------------------------------------------------------

NOTIFY_READY = (ROOT / "services" / "notify" / "__main__.py").exists()
CSV = """id,name,credentials,specialties,zip,city,state,lat,lon,radius_km,rating,review_count,email
dr-ana-lee,Ana Lee,MD,dermatology;procedural-dermatology,90210,,,,,40,4.8,120,ana@example.com
dr-jon-perlman,Jon A. Perlman,"MD, FACS",plastic-surgery,,Beverly Hills,CA,,,50,5,87,
,No Id,MD,dermatology,90210,,,,,40,4,1,
dr-no-specialty,No Specialty,MD,,90210,,,,,40,4,1,
dr-nowhere,Nowhere,MD,dermatology,,,,,,40,4,1,
dr-astrologer,Star Gazer,PhD,astrology,90210,,,,,40,4,1,
dr-ana-lee,Ana Lee Again,MD,dermatology,90210,,,,,40,4,1,
"""


@pytest.mark.skipif(not NOTIFY_READY, reason="services/notify has no __main__.py yet")
def test_doctors_import_registers_good_rows_and_reports_bad_ones(
    redis_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "doctors.csv"
    path.write_text(CSV)
    notify = ServiceProcess("notify", redis_url).start()
    try:
        result = cli("doctors", "import", str(path), "--notify-url", notify.url, "--json")
        assert result.exit_code == 1, result.output
        summary = json.loads(result.stdout)
        assert summary["rows"] == 7 and summary["imported"] == 2
        rejected = {r["row"]: r for r in summary["rejected"]}
        assert set(rejected) == {4, 5, 6, 7, 8}
        assert rejected[4]["message"] == "missing id" and rejected[4]["checked"] == "locally"
        assert "missing specialties" in rejected[5]["message"]
        assert "missing location" in rejected[6]["message"]
        assert rejected[7]["id"] == "dr-astrologer" and rejected[7]["checked"] == "by notify"
        assert rejected[7]["status"] in (400, 422) and rejected[7]["message"]
        assert "duplicate id" in rejected[8]["message"]

        for doctor_id, name in (("dr-ana-lee", "Ana Lee"), ("dr-jon-perlman", "Jon A. Perlman")):
            card = httpx.get(f"{notify.url}/doctors/{doctor_id}", timeout=5)
            assert card.status_code == 200, card.text
            assert card.json()["name"] == name
        assert httpx.get(f"{notify.url}/doctors/dr-astrologer", timeout=5).status_code == 404

        plain = cli("doctors", "import", str(path), "--notify-url", notify.url)
        assert plain.exit_code == 1
        assert "imported 2 of 7 doctors; 5 rejected" in plain.stderr
        assert "dr-astrologer" in plain.stdout
    finally:
        notify.terminate(10)


@pytest.mark.skipif(not NOTIFY_READY, reason="services/notify has no __main__.py yet")
def test_doctors_import_waits_out_notifys_rate_limit(redis_url: str, tmp_path: Path) -> None:
    header = CSV.splitlines()[0]
    rows = [f"dr-{i},Doctor {i},MD,dermatology,90210,,,,,40,4,1," for i in range(24)]
    path = tmp_path / "many.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    limits = {"ASKDOC_RATE_LIMIT_WRITES": "10", "ASKDOC_RATE_LIMIT_WINDOW_S": "1"}
    notify = ServiceProcess("notify", redis_url, **limits).start()
    try:
        result = cli("doctors", "import", str(path), "--notify-url", notify.url, "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["imported"] == 24 and summary["rejected"] == []
        # Every profile event carries the import's correlation id.
        events = client(redis_url).xrange(streams.DOCTOR_PROFILE_CHANGED)
        prefix = f"askdoc-import-{summary['run_id']}-row"
        assert len(events) == 24
        assert all(
            json.loads(f["__data__"])["correlation_id"].startswith(prefix) for _, f in events
        )
    finally:
        notify.terminate(10)


def test_doctors_import_refuses_a_file_without_the_needed_columns(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("name,zip\nAna,90210\n")
    result = cli("doctors", "import", str(path), "--notify-url", "http://127.0.0.1:1")
    assert result.exit_code == 2
    assert "no column id, specialties" in result.output


def test_doctors_import_fails_in_one_line_when_notify_is_down(tmp_path: Path) -> None:
    path = tmp_path / "doctors.csv"
    path.write_text(CSV)
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("doctors", "import", str(path), "--notify-url", url)
    assert result.exit_code == 1
    assert "cannot reach notify" in result.stderr


# --- dev --------------------------------------------------------------------------------


def free_block(size: int) -> int:
    """A base port with `size` consecutive free ports (in this worker's range, if any)."""
    ports = launcher.free_port_range() or range(20_000, 60_001)
    for _ in range(100):
        base = random.randint(ports[0], ports[-1] - size + 1)
        if all(_free(base + i) for i in range(size)):
            return base
    raise RuntimeError("no free block of ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def start_dev(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """`askdoc dev` as a process (no JWT secret in its environment), its lines collected."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("ASKDOC_JWT_SECRET", "ASKDOC_REDIS_URL")
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "askdoc_cli", "dev", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    stdout = proc.stdout
    assert stdout is not None

    def read() -> None:
        for line in stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purpose.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not NOTIFY_READY, reason="services/notify has no __main__.py yet")
def test_dev_starts_redis_and_the_services_and_stops_them_all(tmp_path: Path) -> None:
    redis_port = free_port()
    # The web keeps its default port's offset too: 8000 is one below questions' 8001.
    web_port = free_block(5)
    base = web_port + 1
    proc, lines = start_dev(
        "--redis-port", str(redis_port), "--base-port", str(base), "--stop-timeout", "15",
        "--ready-timeout", "140",
    )  # fmt: skip
    try:
        wait_for(
            lambda: any("all services ready" in x for x in lines) or proc.poll() is not None,
            timeout=150,
            what="askdoc dev to report all services ready",
        )
        assert proc.poll() is None, "\n".join(lines[-40:])
        for port in range(web_port, base + 4):
            assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        assert any(x.startswith("ASKDOC_JWT_SECRET=") for x in lines)
        pids = {
            m.group(1): int(m.group(2))
            for x in lines
            if (m := re.match(r"started (\w+)\s+pid (\d+)", x))
        }
        assert set(pids) == {"redis", "questions", "answers", "votes", "notify", "web"}
        assert all(_alive(pid) for pid in pids.values())
        # Service logs arrive prefixed by their service name.
        assert any(x.startswith("questions |") for x in lines)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=40) == 0
        assert not [name for name, pid in pids.items() if _alive(pid)]
        assert any(x.startswith("stopped redis") for x in lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_dev_uses_a_running_redis_and_stops_on_sigterm(redis_url: str) -> None:
    base = free_block(4)
    proc, lines = start_dev(
        "--redis-url", redis_url, "--base-port", str(base), "--service", "votes",
        "--ready-timeout", "110",
    )  # fmt: skip
    try:
        wait_for(
            lambda: any("all services ready" in x for x in lines) or proc.poll() is not None,
            timeout=120,
            what="askdoc dev to report votes ready",
        )
        assert proc.poll() is None, "\n".join(lines[-40:])
        assert any("using the Redis already listening" in x for x in lines)
        (pid,) = [
            int(m.group(1)) for x in lines if (m := re.match(r"started votes\s+pid (\d+)", x))
        ]
        assert not any(x.startswith("started redis") for x in lines)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not _alive(pid)
        assert client(redis_url).ping()  # a Redis it did not start is left alone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
