"""A Redis blip under notify's delivery worker: SIGKILL mid-delivery, restart on its AOF.

The kill comes from the receiver, while it holds a webhook that notify has sent and not
yet recorded: that one and every other delivery in flight go out as soon as Redis is
back (their Redis steps run again in place), not a claim time later, and none is sent
twice (the send itself is never run again for Redis). Each is verified as a receiver
does, with `standardwebhooks`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx

from shared import geo, streams
from shared.events import Location, QuestionPosted
from tests.receivers import WebhookReceiver, verify
from tests.support import RedisServer, ServiceProcess, admin_auth, auth, verified, wait_for

#: Far longer than the test's bounds: no delivery (nor event) can be claimed within them.
CLAIM_IDLE_S = 60
DOCTORS, QUESTIONS = 8, 10
#: The receiver kills Redis as this delivery comes in, before answering it.
KILL_AT = 6
CITY = ("Denver", "CO")


def test_webhooks_in_flight_when_redis_dies_go_out_once_as_soon_as_it_is_back() -> None:
    # appendfsync always: the restarted Redis has every entry and pending entry it acked.
    server = RedisServer(appendonly=True, appendfsync="always").start()
    killed = threading.Event()
    calls = [0]

    def kill_once(_: int) -> tuple[int, dict[str, str]]:
        # Runs in the receiver's thread, so notify has sent this delivery and waits for
        # the answer (then writes its status) while Redis dies.
        calls[0] += 1
        if calls[0] == KILL_AT:
            server.kill()
            killed.set()
        return 200, {}

    paths = [f"/dr/{i}" for i in range(DOCTORS)]
    receiver = WebhookReceiver(behaviours=dict.fromkeys(paths, kill_once)).start()
    notify = ServiceProcess(
        "notify",
        server.url,
        ASKDOC_DELIVERY_CLAIM_IDLE_S=str(CLAIM_IDLE_S),
        ASKDOC_CLAIM_IDLE_MS=str(CLAIM_IDLE_S * 1000),
        ASKDOC_MATCH_CAP="50",
        # Few in hand at once: when Redis dies, some deliveries are sent and wait for their
        # status write, and most are not read yet (their reads come after it is back).
        ASKDOC_DELIVERY_BACKLOG="4",
    )
    try:
        notify.start(timeout=120)  # a loaded machine takes a while to load the gazetteer
        secrets = {
            path: _put_doctor(notify, f"dr-blip-{i}", receiver.url(path))
            for i, path in enumerate(paths)
        }
        place = geo.geocode(city=CITY[0], state=CITY[1])
        client = server.client()
        for n in range(QUESTIONS):
            event = QuestionPosted(
                correlation_id=f"corr-blip-{n}",
                producer="questions",
                question_id=f"q-blip-{n}",
                title=f"Question {n}",
                body="A private body",
                topics=["acne"],
                specialties=["dermatology"],
                location=Location(lat=place.lat, lon=place.lon),
                asker_id="patient-blip",
            )
            client.xadd(event.stream, event.to_wire())
        assert killed.wait(60), "no delivery reached the receiver"
        time.sleep(1.0)
        server.start()
        back = time.monotonic()
        client = server.client()

        expected = DOCTORS * QUESTIONS
        wait_for(
            lambda: len({d.headers["webhook-id"] for d in receiver.deliveries}) == expected,
            timeout=25,
            what=f"all {expected} webhooks (a claim comes {CLAIM_IDLE_S} s after Redis died)",
        )
        print(
            "last webhook",
            round(max(d.at for d in receiver.deliveries) - back, 2),
            "s after Redis was back",
        )
        # And each is done: recorded delivered and acked (not left for a claim to send again).
        outbox = f"{streams.slot_tag(streams.NOTIFICATION_SENT)}:outbox"
        wait_for(
            lambda: (
                client.xpending(outbox, "notify")["pending"] == 0
                and _statuses(notify, len(paths)) == {"delivered": expected}
            ),
            timeout=25,
            what="every delivery recorded delivered and acked",
        )
        time.sleep(2)  # a second send of any would come now (or at the claim, far later)
        sent = Counter((d.path, d.headers["webhook-id"]) for d in receiver.deliveries)
        assert len(sent) == expected
        assert set(sent.values()) == {1}, [k for k, v in sent.items() if v > 1]
        for delivery in receiver.deliveries:
            payload: dict[str, Any] = verify(delivery, secrets[delivery.path])
            assert payload["data"]["notification"]["question_id"].startswith("q-blip-")
        logs = notify.logs()
        assert "deliveries_claimed" not in logs
        assert "delivery_entry_failed" not in logs
        outage = [line for line in logs.splitlines() if "consumers_" in line]
        assert logs.count("consumers_lost_redis") == 1, outage
        assert logs.count("consumers_have_redis_again") == 1, outage
        assert "delivery_loop_failed" not in logs
        assert "Traceback" not in logs
    finally:
        notify.terminate(30)
        receiver.stop()
        server.cleanup()


def _statuses(notify: ServiceProcess, doctors: int) -> Counter[str]:
    """How many of the doctors' notifications have each webhook status."""
    statuses: Counter[str] = Counter()
    for i in range(doctors):
        r = httpx.get(
            f"{notify.url}/inbox",
            params={"limit": 100},
            headers=auth(f"dr-blip-{i}", "doctor"),
            timeout=10,
        )
        assert r.status_code == 200, r.text
        statuses.update(item["delivery"]["webhook"] for item in r.json()["items"])
    return statuses


def _put_doctor(notify: ServiceProcess, doctor_id: str, url: str) -> str:
    """A verified dermatologist in Denver with a webhook to `url`; its signing secret."""
    body = {
        "name": f"Dr {doctor_id}",
        "specialties": ["dermatology"],
        "location": {"city": CITY[0], "state": CITY[1]},
        "webhook_url": url,
    }
    r = httpx.put(
        f"{notify.url}/doctors/{doctor_id}",
        json=verified(body, doctor_id),
        headers=admin_auth(),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["webhook_secret"])
