"""One trace from POST /questions to the doctor's webhook, across processes and streams.

questions and notify run as processes exporting OTLP/HTTP to a tiny collector this test
runs (it decodes the protobuf requests with opentelemetry-proto); the webhook goes to a
local receiver, which also checks the `traceparent` header it got.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from shared import streams
from tests.receivers import WebhookReceiver
from tests.support import RedisServer, auth, free_port, register_doctor, running_services, wait_for

SECRET = "whsec_YXNrZG9jLXRlc3Qtd2ViaG9vay1zZWNyZXQtMDAwMDA="


def exporting_to(collector_url: str) -> dict[str, str]:
    """A service's settings to export its spans to the test's collector, quickly."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector_url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }


def ask_a_traced_doctor(procs: dict[str, Any], hooks: WebhookReceiver, name: str) -> str:
    """Register doctor `dr-{name}` with a webhook at `/{name}`, post a question that
    matches only them, and return its id."""
    register_doctor(
        procs["notify"].url,
        f"dr-{name}",
        name=f"Dr {name.replace('-', ' ').title()}",
        webhook_url=hooks.url(f"/{name}"),
        webhook_secret=SECRET,
    )
    posted = httpx.post(
        f"{procs['questions'].url}/questions",
        json={
            "title": "Acne scars on my cheeks",
            "body": "What helps with old acne scars?",
            "topics": ["acne"],
            "specialties": ["dermatology"],
            "location": {"city": "Los Angeles", "state": "CA"},
        },
        headers=auth(f"patient-{name}"),
        timeout=10,
    )
    assert posted.status_code == 201, posted.text
    return str(posted.json()["id"])


class Collector:
    """An OTLP/HTTP trace receiver on loopback keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    service = next(
                        a.value.string_value
                        for a in resource.resource.attributes
                        if a.key == "service.name"
                    )
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            spans.append(
                                {
                                    "service": service,
                                    "name": span.name,
                                    "kind": span.kind,
                                    "trace_id": span.trace_id.hex(),
                                    "span_id": span.span_id.hex(),
                                    "parent": span.parent_span_id.hex() or None,
                                }
                            )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Collector:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Any]]:
    server = RedisServer().start()
    hooks = WebhookReceiver().start()
    try:
        with (
            Collector() as collector,
            running_services(
                server.url,
                ["questions", "notify"],
                **exporting_to(collector.url),
            ) as procs,
        ):
            yield {"server": server, "hooks": hooks, "collector": collector, "procs": procs}
    finally:
        hooks.stop()
        server.cleanup()


def test_one_trace_links_the_post_the_xadd_the_handling_and_the_webhook(
    world: dict[str, Any],
) -> None:
    procs, hooks, collector = world["procs"], world["hooks"], world["collector"]
    qid = ask_a_traced_doctor(procs, hooks, "traced")

    [hook] = wait_for(lambda: hooks.to("/traced"), timeout=60, what="the webhook")
    version, trace_id, parent_id, flags = hook.headers["traceparent"].split("-")
    assert version == "00" and int(flags, 16) & 1 and len(trace_id) == 32  # sampled

    # The event on the stream carries the same trace, readable by any client.
    entries = world["server"].client().xrange(streams.QUESTION_POSTED)
    [event] = [json.loads(f["__data__"]) for _, f in entries if qid in f["__data__"]]
    assert event["traceparent"].split("-")[1] == trace_id

    def linked() -> dict[str, dict[str, Any]] | None:
        """The trace's spans once the webhook's whole chain up to a root has arrived: each
        service exports in its own batches, and a parent ends (and leaves) after its child."""
        spans = {s["span_id"]: s for s in collector.spans if s["trace_id"] == trace_id}
        span_id = parent_id
        while span_id in spans:
            if spans[span_id]["parent"] is None:
                return spans
            span_id = spans[span_id]["parent"]
        return None

    spans = wait_for(linked, timeout=60, what="the spans of the trace at the collector")

    def chain(span_id: str) -> list[tuple[str, str]]:
        """(service, name) from a span up to the trace's root."""
        path = []
        while span_id in spans:
            path.append((spans[span_id]["service"], spans[span_id]["name"]))
            span_id = spans[span_id]["parent"]
        return path

    # The webhook's client span leads back through notify's handling and the XADD
    # to the POST: one trace, each step the child of the one before.
    path = chain(parent_id)
    assert path[0] == ("askdoc-notify", "webhook send")
    assert path[-1] == ("askdoc-questions", "POST /questions")
    assert ("askdoc-questions", "askdoc.question-posted publish") in path
    assert ("askdoc-notify", "askdoc.question-posted process") in path
    assert ("askdoc-notify", "notify deliver") in path
    assert path.index(("askdoc-notify", "askdoc.question-posted process")) > path.index(
        ("askdoc-notify", "notify deliver")
    )

    # Log lines carry the trace id beside the correlation id.
    log = procs["notify"].log_path.read_text()
    lines = [json.loads(x) for x in log.splitlines() if x.startswith("{") and trace_id in x]
    assert any(line.get("correlation_id") and line.get("trace_id") == trace_id for line in lines)
