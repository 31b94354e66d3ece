"""notify's delivery part as its own process: `python -m services.notify.delivery`.

notify runs with ASKDOC_DELIVERY_IN_PROCESS=false, so its outbox entries wait, pending,
until the delivery process starts and sends them: once each, signed, status recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from shared.events import Location, QuestionPosted
from tests.support import (
    RedisServer,
    ServiceProcess,
    admin_auth,
    auth,
    free_port,
    verified,
    wait_for,
)

SECRET = "whsec_YXBhcnQtdGVzdC13ZWJob29rLXNlY3JldC0wMDAwMDA="


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, str]]]]:
    calls: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            calls.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", calls
    finally:
        server.shutdown()


def test_delivery_runs_apart_and_sends_what_notify_left_in_the_outbox(
    receiver: tuple[str, list[dict[str, str]]],
) -> None:
    url, calls = receiver
    redis = RedisServer().start()
    notify = ServiceProcess("notify", redis.url, ASKDOC_DELIVERY_IN_PROCESS="false")
    delivery = ServiceProcess("notify.delivery", redis.url)
    try:
        notify.start()
        profile = {
            "name": "Dr Apart",
            "specialties": ["dermatology"],
            "location": {"lat": 41.88, "lon": -87.63},
            "webhook_url": url,
            "webhook_secret": SECRET,
        }
        r = httpx.put(
            f"{notify.url}/doctors/dr-apart",
            json=verified(profile, "dr-apart"),
            headers=admin_auth(),
        )
        assert r.status_code == 200, r.text
        question = QuestionPosted(
            correlation_id="corr-apart",
            producer="questions",
            question_id="q-apart",
            title="A question",
            body="A private body",
            topics=["botox"],
            specialties=["dermatology"],
            location=Location(lat=41.88, lon=-87.63),
            asker_id="patient-apart",
        )
        redis.client().xadd(question.stream, question.to_wire())

        def items() -> list[dict[str, Any]]:
            r = httpx.get(f"{notify.url}/inbox", headers=auth("dr-apart", "doctor"), timeout=5)
            return list(r.json()["items"])

        [item] = wait_for(items, what="the alert in the inbox")
        time.sleep(1.5)  # notify itself leaves the webhook alone
        [item] = items()
        assert item["delivery"]["webhook"] == "pending"
        assert calls == []

        delivery.start()
        wait_for(
            lambda: [i for i in items() if i["delivery"]["webhook"] == "delivered"],
            what="the webhook delivered by the delivery process",
        )
        assert [c["webhook-id"] for c in calls] == [item["id"]]
        metrics = httpx.get(f"{delivery.url}/metrics", timeout=5).text
        assert 'askdoc_notify_deliveries_total{channel="webhook",status="delivered"} 1.0' in metrics
        # A graceful stop on SIGTERM (uvicorn re-raises the signal once shut down).
        assert delivery.terminate(15) in (0, -15)
        assert "service_stopped" in delivery.logs()
    finally:
        delivery.terminate(5)
        notify.terminate(5)
        redis.cleanup()
