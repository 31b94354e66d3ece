"""No receiver can stall or kill notify's delivery; receivers steer it by the standard's means.

notify runs as a process with few delivery slots (4, one per host). Receivers are real:
a trickling one (200, then a body that never ends) and one that accepts and holds the
connection run as their own processes on other loopback addresses; the well-behaved
receiver is a uvicorn server that verifies each delivery with `standardwebhooks`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import geo, streams
from shared.events import Location, QuestionPosted
from tests.receivers import Delivery, WebhookReceiver, verify
from tests.support import (
    ROOT,
    RedisServer,
    ServiceProcess,
    admin_auth,
    auth,
    free_port,
    verified,
    wait_for,
)

TAG = streams.slot_tag(streams.NOTIFICATION_SENT)
SPECIALTY = "dermatology"
CITY = ("Denver", "CO")


class BadReceiver:
    """`python -m tests.receivers MODE HOST PORT` as its own process."""

    def __init__(self, mode: str, host: str) -> None:
        self.host, self.port = host, free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.receivers", mode, host, str(self.port)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "listening"

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, Any]]:
    server = RedisServer().start()
    good = WebhookReceiver(
        behaviours={
            "/busy": lambda n: (429, {"Retry-After": "2"}) if n == 1 else (200, {}),
            "/gone": lambda n: (410, {}),
        }
    ).start()
    trickle = BadReceiver("trickle", "127.0.0.2")
    hold = BadReceiver("hold", "127.0.0.3")
    notify = ServiceProcess(
        "notify",
        server.url,
        ASKDOC_DELIVERY_CONCURRENCY="4",
        ASKDOC_WEBHOOK_HOST_SLOTS="1",
        ASKDOC_WEBHOOK_TIMEOUT_S="4",
        ASKDOC_RETRY_BASE_S="0.2",
        ASKDOC_WEBHOOK_MAX_ATTEMPTS="3",
        ASKDOC_MATCH_CAP="50",
        ASKDOC_DELIVERY_CLAIM_IDLE_S="1",
        ASKDOC_MAX_DELIVERIES="3",
    )
    try:
        notify.start(timeout=120)  # a loaded machine takes a while to load the gazetteer
        yield {"server": server, "notify": notify, "good": good, "trickle": trickle, "hold": hold}
    finally:
        # The bad receivers go first: while one still held a delivery open, notify took
        # 10 s to stop.
        trickle.stop()
        hold.stop()
        notify.terminate(15)
        good.stop()
        server.cleanup()


def put_doctor(env: dict[str, Any], doctor_id: str, **fields: Any) -> dict[str, Any]:
    body = {
        "name": f"Dr {doctor_id}",
        "specialties": [SPECIALTY],
        "location": {"city": CITY[0], "state": CITY[1]},
        **fields,
    }
    # Registered verified by an admin: only verified doctors are alerted.
    r = httpx.put(
        f"{env['notify'].url}/doctors/{doctor_id}",
        json=verified(body, doctor_id),
        headers=admin_auth(),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def publish(env: dict[str, Any], qid: str) -> float:
    place = geo.geocode(city=CITY[0], state=CITY[1])
    event = QuestionPosted(
        correlation_id=f"corr-{qid}",
        producer="questions",
        question_id=qid,
        title=f"Question {qid}",
        body="A private body",
        topics=["acne"],
        specialties=[SPECIALTY],
        location=Location(lat=place.lat, lon=place.lon),
        asker_id="patient-r",
    )
    env["server"].client().xadd(event.stream, event.to_wire())
    return time.monotonic()


def items(env: dict[str, Any], doctor_id: str) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{env['notify'].url}/inbox",
        params={"limit": 100},
        headers=auth(doctor_id, "doctor"),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def question_of(delivery: Delivery) -> str:
    return str(json.loads(delivery.body)["data"]["notification"]["question_id"])


def test_slow_receivers_neither_stall_others_nor_grow_memory(env: dict[str, Any]) -> None:
    good: WebhookReceiver = env["good"]
    secrets: dict[str, str] = {}
    for i in range(4):
        # No secret given: the server makes one and shows it once, in this reply.
        reply = put_doctor(env, f"dr-good-{i}", webhook_url=good.url(f"/good/{i}"))
        secrets[f"/good/{i}"] = reply["webhook_secret"]
        put_doctor(env, f"dr-trickle-{i}", webhook_url=env["trickle"].url("/t"))
    # Eight held deliveries per question at 4 s each would fill every shared slot.
    for i in range(8):
        put_doctor(env, f"dr-hold-{i}", webhook_url=env["hold"].url("/h"))
    pid = env["notify"].pid
    publish(env, "q-warm")
    wait_for(
        lambda: len({d.path for d in good.deliveries if d.path.startswith("/good/")}) == 4,
        timeout=30,
        what="warm-up deliveries",
    )
    baseline = rss_kb(pid)
    peak = baseline
    latencies: list[float] = []
    for n in range(8):
        qid = f"q-slow-{n}"
        sent = publish(env, qid)
        while True:
            arrived = [
                d for d in good.deliveries if d.path.startswith("/good/") and question_of(d) == qid
            ]
            peak = max(peak, rss_kb(pid))
            if len(arrived) == 4:
                latencies.append(max(d.at for d in arrived) - sent)
                break
            assert time.monotonic() - sent < 15, f"{qid}: good webhooks stalled"
            time.sleep(0.05)
        time.sleep(1.0)
    # The trickling receiver kept streaming all along; memory did not follow it.
    for _ in range(5):
        peak = max(peak, rss_kb(pid))
        time.sleep(1)
    assert (peak - baseline) < 40 * 1024, f"RSS grew {baseline} -> {peak} kB"
    # Four slots, one per host: the held and trickling hosts take at most two of them.
    print("good webhook latencies (s):", [round(x, 2) for x in latencies])
    print("notify RSS (kB): baseline", baseline, "peak", peak)
    assert max(latencies) < 3.0, latencies
    for delivery in good.deliveries:
        if delivery.path.startswith("/good/"):
            verify(delivery, secrets[delivery.path])
    # A 200 with an endless body counts as delivered (only a capped part is read); the
    # receiver that never answers runs into each attempt's deadline and is retried.
    assert {i["delivery"]["webhook"] for i in items(env, "dr-trickle-0")} == {"delivered"}
    assert {i["delivery"]["webhook"] for i in items(env, "dr-hold-0")} <= {
        "pending",
        "retrying",
        "failed",
    }
    assert "Traceback" not in env["notify"].logs()


def test_retry_after_is_honoured_and_a_410_switches_the_webhook_off(
    env: dict[str, Any],
) -> None:
    good: WebhookReceiver = env["good"]
    busy = put_doctor(
        env, "dr-busy", specialties=["internal-medicine"], webhook_url=good.url("/busy")
    )
    gone = put_doctor(
        env, "dr-gone", specialties=["internal-medicine"], webhook_url=good.url("/gone")
    )
    place = geo.geocode(city=CITY[0], state=CITY[1])

    def ask(qid: str) -> None:
        event = QuestionPosted(
            correlation_id=f"corr-{qid}",
            producer="questions",
            question_id=qid,
            title=f"Question {qid}",
            body="A private body",
            topics=["rash"],
            specialties=["internal-medicine"],
            location=Location(lat=place.lat, lon=place.lon),
            asker_id="patient-r",
        )
        env["server"].client().xadd(event.stream, event.to_wire())

    ask("q-steer-1")
    wait_for(lambda: len(good.to("/busy")) == 2, timeout=30, what="the retry after a 429")
    first, second = good.to("/busy")
    assert first.status == 429 and second.status == 200
    # Retry-After: 2 beats the schedule's first delay (0.2 s here).
    assert second.at - first.at >= 1.9
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    verify(second, busy["webhook_secret"])

    # 410: the endpoint is switched off and the doctor is told in their inbox.
    notice = wait_for(
        lambda: [i for i in items(env, "dr-gone") if i["kind"] == "channel-off"],
        timeout=30,
        what="the channel-off notice",
    )
    [item] = notice
    assert item["reason"]["channel"] == "webhook" and "410" in item["reason_text"]
    assert len(good.to("/gone")) == 1
    verify(good.to("/gone")[0], gone["webhook_secret"])
    own = httpx.get(
        f"{env['notify'].url}/doctors/dr-gone", headers=auth("dr-gone", "doctor"), timeout=5
    ).json()
    assert own["webhook_off"] is True and "webhook_secret" not in own
    [alert] = [i for i in items(env, "dr-gone") if i["question_id"] == "q-steer-1"]
    assert alert["delivery"]["webhook"] == "failed"

    ask("q-steer-2")
    [later] = wait_for(
        lambda: [i for i in items(env, "dr-gone") if i["question_id"] == "q-steer-2"],
        what="the next alert",
    )
    assert "webhook" not in later["delivery"]  # inbox only now
    time.sleep(0.5)
    assert len(good.to("/gone")) == 1

    # The doctor sets a working URL: the webhook is on again.
    again = put_doctor(
        env, "dr-gone", specialties=["internal-medicine"], webhook_url=good.url("/back")
    )
    assert again["webhook_off"] is False
    ask("q-steer-3")
    wait_for(lambda: good.to("/back"), what="delivery to the new URL")
    verify(good.to("/back")[0], gone["webhook_secret"])


def test_an_outbox_entry_that_keeps_crashing_goes_to_the_dead_letters(
    env: dict[str, Any],
) -> None:
    client = env["server"].client()
    # A notification whose stored item is corrupt: every try raises before any send.
    nid = "n0000000000000000000000ff"
    client.hset(f"{TAG}:n:{nid}", mapping={"item": "{not json", "recipient": "dr-x"})
    entry_id = client.xadd(
        f"{TAG}:outbox", {"nid": nid, "recipient": "dr-x", "channels": "webhook"}
    )

    def letters() -> list[dict[str, Any]]:
        found = []
        for _, fields in client.xrange(streams.DEAD_LETTER):
            letter = json.loads(fields["__data__"])
            if letter["entry_id"] == entry_id:
                found.append(letter)
        return found

    [letter] = wait_for(letters, timeout=60, what="the outbox entry dead-lettered")
    assert letter["source_stream"] == f"{TAG}:outbox"
    assert letter["delivery_count"] == 3  # ASKDOC_MAX_DELIVERIES
    assert "JSONDecodeError" in letter["error"]
    assert letter["fields"]["nid"] == nid
    wait_for(
        lambda: not client.xpending_range(f"{TAG}:outbox", "notify", entry_id, entry_id, 1),
        what="the entry acked",
    )
    time.sleep(3)  # claimed no more
    assert len(letters()) == 1
