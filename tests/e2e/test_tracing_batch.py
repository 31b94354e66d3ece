"""The question's trace reaches the webhook when notify alerts through its batch path.

notify runs untraced (so its consumer takes batches: `alert_batch.lua`) and without its
delivery part; the delivery part runs apart, traced, as does questions, both exporting to
the test's collector. The outbox entry the batch writes carries the question's
`traceparent`, so the delivery's spans and the webhook's header join the question's trace.
"""

from __future__ import annotations

import json
from typing import Any

from shared import streams
from tests.e2e.test_tracing import Collector, ask_a_traced_doctor, exporting_to
from tests.receivers import WebhookReceiver
from tests.support import RedisServer, running_services, wait_for


def test_a_batch_alerts_outbox_entry_carries_the_questions_trace_to_the_webhook() -> None:
    server = RedisServer().start()
    hooks = WebhookReceiver().start()
    try:
        with Collector() as collector:
            endpoint = exporting_to(collector.url)
            with running_services(
                server.url,
                ["questions", "notify", "notify.delivery"],
                each={
                    "questions": endpoint,
                    "notify": {"ASKDOC_DELIVERY_IN_PROCESS": "false"},
                    "notify.delivery": endpoint,
                },
            ) as procs:
                check_the_trace(server, hooks, collector, procs)
    finally:
        hooks.stop()
        server.cleanup()


def check_the_trace(
    server: RedisServer, hooks: WebhookReceiver, collector: Collector, procs: dict[str, Any]
) -> None:
    qid = ask_a_traced_doctor(procs, hooks, "batch-traced")
    client = server.client()
    [event] = [
        json.loads(f["__data__"])
        for _, f in client.xrange(streams.QUESTION_POSTED)
        if qid in f["__data__"]
    ]
    _, trace_id, publish_span, _ = event["traceparent"].split("-")

    # The batch wrote the question's context into the outbox entry...
    outbox = "{askdoc.notification-sent}:outbox"
    entries = wait_for(lambda: client.xrange(outbox), timeout=60, what="the outbox entry")
    assert [f.get("traceparent") for _, f in entries] == [event["traceparent"]]
    # ...so the webhook, sent by the delivery process, is in the question's trace,
    [hook] = wait_for(lambda: hooks.to("/batch-traced"), timeout=60, what="the webhook")
    assert hook.headers["traceparent"].split("-")[1] == trace_id

    # and so are the delivery's spans: `notify deliver` is a child of the publish span.
    def delivered() -> dict[str, Any] | None:
        spans = [
            s
            for s in collector.spans
            if s["trace_id"] == trace_id and s["name"] == "notify deliver"
        ]
        return spans[0] if spans else None

    deliver = wait_for(delivered, timeout=60, what="the delivery's span at the collector")
    assert deliver["service"] == "askdoc-notify" and deliver["parent"] == publish_span
    # notify itself traced nothing: the batch path ran, not the per-entry one.
    assert not [s for s in collector.spans if s["name"] == "askdoc.question-posted process"]
