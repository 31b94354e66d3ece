"""structlog set-up: JSON or console lines carrying the correlation id."""

from __future__ import annotations

import logging
import os
import sys
from contextvars import ContextVar
from typing import Any

import structlog

from shared.tracing import current_trace_id

_correlation_id: ContextVar[str | None] = ContextVar("askdoc_correlation_id", default=None)

# Keys that may carry personal data; they never reach a log line even if bound by mistake.
_REDACTED_KEYS = frozenset(
    {"email", "body", "title", "webhook_secret", "secret", "password", "token", "authorization"}
)


def new_correlation_id() -> str:
    """A random (version 4) UUID as text: `str(uuid.uuid4())` without the UUID object,
    at a third of its cost (one per request that brings no X-Request-Id)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def current_correlation_id() -> str:
    """The correlation id of the work in progress, or a fresh one."""
    return _correlation_id.get() or new_correlation_id()


def bind_correlation_id(correlation_id: str | None, **extra: Any) -> str:
    """Bind a correlation id (new if none) to the context and every log line after."""
    cid = correlation_id or new_correlation_id()
    _correlation_id.set(cid)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(correlation_id=cid, **extra)
    return cid


def _redact(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in _REDACTED_KEYS.intersection(event_dict):
        event_dict[key] = "[redacted]"
    return event_dict


def _add_trace_id(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    trace_id = current_trace_id()
    if trace_id:
        event_dict["trace_id"] = trace_id
    return event_dict


def configure_logging(service: str, fmt: str = "json", level: str = "INFO") -> None:
    """Route structlog and stdlib logging to stderr in one format."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )

    def add_service(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_trace_id,
        add_service,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    processors: list[Any] = [
        *shared,
        structlog.processors.format_exc_info if fmt == "json" else _noop,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log repeats what our request middleware logs with more context.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error", "faststream", "faststream.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # FastStream's own INFO lines (task callbacks, per-batch access) are noise here: the
    # consumer logs what matters (failures, dead letters) as structured events.
    logging.getLogger("faststream").setLevel(logging.WARNING)
    # httpx logs every request URL at INFO; webhook URLs can carry credentials.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("faststream.access").setLevel(logging.WARNING)


def _noop(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return event_dict


class _Logger:
    """structlog's lazy logger, whose methods are kept once structlog caches the logger.

    With `cache_logger_on_first_use` structlog resolves a logger once, yet still looks up
    each method through its proxy's `__getattr__` on every call: a `log.info` filtered out
    by the level cost 10k instructions (twice per POST /questions). A method is kept only
    when structlog is configured to cache, so it is never staler than structlog's own.
    """

    def __init__(self, name: str | None) -> None:
        self._lazy = structlog.get_logger(name)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._lazy, name)
        if structlog.is_configured() and structlog.get_config()["cache_logger_on_first_use"]:
            self.__dict__[name] = value
        return value


def get_logger(name: str | None = None) -> Any:
    """A structlog logger."""
    return _Logger(name)
