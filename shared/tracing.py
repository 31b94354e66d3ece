"""OpenTelemetry tracing, off unless the standard ``OTEL_*`` variables ask for it.

Tracing is on when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``)
or an OTLP endpoint is set, and ``OTEL_SDK_DISABLED`` is not true. Off, no SDK is set
up and every helper here returns at once. On, spans cover HTTP requests, each event's
publish (the XADD in a commit) and handling, and outbound webhook and SMTP calls. The
W3C trace context crosses Redis Streams in each event's optional ``traceparent`` field.
OTLP goes over HTTP/protobuf (the spec's default protocol); ``grpc`` needs the
``otlp-grpc`` extra.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()
_enabled = False
_tracer: trace.Tracer = trace.NoOpTracer()


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* environment asks for traces."""
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def enabled() -> bool:
    """Tracing was set up in this process."""
    return _enabled


def setup(service: str) -> bool:
    """Set up the SDK for `service` if the environment asks for traces (once per process)."""
    global _enabled, _tracer
    if _enabled or not wanted():
        return _enabled
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or f"askdoc-{service}"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    for exporter in _exporters():
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("askdoc")
    _enabled = True
    return True


def _exporters() -> list[Any]:
    names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")
    found: list[Any] = []
    for name in (n.strip() for n in names):
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            found.append(ConsoleSpanExporter())
        elif name == "otlp":
            protocol = os.environ.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            )
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                    OTLPSpanExporter as GrpcExporter,
                )

                found.append(GrpcExporter())
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )

                found.append(OTLPSpanExporter())
    return found


def traceparent() -> str | None:
    """The current span's W3C `traceparent`, or None when not tracing."""
    if not _enabled:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def outgoing_headers() -> dict[str, str]:
    """Trace context headers for an outbound request (empty when not tracing)."""
    if not _enabled:
        return {}
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def _parent(parent: str | None) -> context.Context | None:
    return _propagator.extract({"traceparent": parent}) if parent else None


def start_span(name: str, kind: SpanKind, parent: str | None = None, **attributes: Any) -> Span:
    """A started span (not made current), child of `parent` or of the current span."""
    ctx = _parent(parent)
    return _tracer.start_span(name, context=ctx, kind=kind, attributes=_clean(attributes))


@contextmanager
def _current(span: Span) -> Iterator[Span]:
    with trace.use_span(
        span, end_on_exit=True, record_exception=True, set_status_on_exception=True
    ):
        yield span


def span(
    name: str, kind: SpanKind = SpanKind.INTERNAL, parent: str | None = None, **attributes: Any
) -> Any:
    """A context manager: a current span while the block runs (nothing when not tracing)."""
    if not _enabled:
        return nullcontext(None)
    return _current(start_span(name, kind, parent, **attributes))


def publishing(stream: str) -> Span | None:
    """A producer span for an event about to be written to `stream` (None when off)."""
    if not _enabled:
        return None
    return start_span(
        f"{stream} publish",
        SpanKind.PRODUCER,
        **{"messaging.system": "redis", "messaging.destination.name": stream},
    )


def span_traceparent(span_: Span) -> str:
    """The W3C `traceparent` naming `span_`."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span_))
    return carrier["traceparent"]


def end_publish(span_: Span, entry_id: str | None) -> None:
    """End a producer span once its commit ran (an entry id, or None if a guard stopped it)."""
    if entry_id:
        span_.set_attribute("messaging.message.id", entry_id)
    else:
        span_.set_attribute("askdoc.published", False)
    span_.end()


def failed(span_: Span | None, error: str) -> None:
    """Mark `span_` failed without an exception to record."""
    if span_ is not None:
        span_.set_status(Status(StatusCode.ERROR, error[:200]))


def current_trace_id() -> str | None:
    """The current trace id as 32 hex digits, or None."""
    if not _enabled:
        return None
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}
