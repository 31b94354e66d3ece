"""The live inbox: notify's `/inbox/stream` relayed to the browser as rendered items.

The browser's EventSource cannot send a bearer token and a token must never sit in a
URL, so the browser connects here with its session cookie and this service opens
notify's stream with the user's token. Each `notification` event is re-sent with the
same id (the notification id, so the browser's Last-Event-ID resumes at notify) and, as
data, the inbox item rendered by the same template as the page. A `withdrawn` event (the
ids of alerts about something a moderator just hid) is passed on for the page to drop them,
and a `restored` one (the alerts a restore brought back) as those items rendered, for the
page to put them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
from pydantic import ValidationError

from shared.logging import get_logger

from .clients import InboxItem, NotifyClient

log = get_logger("askdoc.web.live")

RETRY_MS = 3000
_NOTIFICATION_ID = re.compile(r"^n[0-9a-f]{24}$")


def _notification_ids(ids: Any) -> list[str] | None:
    if not isinstance(ids, list) or not all(
        isinstance(i, str) and _NOTIFICATION_ID.match(i) for i in ids
    ):
        return None
    return ids


def withdrawn_ids(data: str) -> list[str] | None:
    """The notification ids of a `withdrawn` event (a moderator hid what they were about),
    or None when the data is not that."""
    try:
        return _notification_ids(json.loads(data)["ids"])
    except (ValueError, KeyError, TypeError):
        return None


def withdrawn_event(data: str) -> dict[str, list[str]] | None:
    """A `withdrawn` event as passed on: its `ids`, and `unread`, those of them unread (when
    notify says), for the count of a page that lists them on a later page; None if not that."""
    if (ids := withdrawn_ids(data)) is None:
        return None
    event = {"ids": ids}
    try:
        unread = _notification_ids(json.loads(data).get("unread"))
    except (ValueError, AttributeError):
        unread = None
    if unread is not None:
        event["unread"] = [i for i in unread if i in ids]
    return event


def restored_items(data: str) -> list[InboxItem] | None:
    """The inbox items of a `restored` event (a moderator brought back what they were
    about), or None when the data is not that."""
    try:
        raw = json.loads(data)["items"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(raw, list):
        return None
    try:
        return [InboxItem.model_validate(item) for item in raw]
    except ValidationError:
        log.warning("live_item_unreadable")
        return None


class LiveRelays:
    """Ends every open relay when the process is told to stop."""

    def __init__(self) -> None:
        self.closing = asyncio.Event()

    def end_on_signal(self) -> None:
        """Close open streams as soon as SIGTERM/SIGINT arrives (browsers reconnect).

        uvicorn waits for open responses before its lifespan shutdown, and an event stream
        never ends by itself, so without this one open inbox would hold a stopping
        replica for the whole grace period.
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(signum: int, frame: Any, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.closing.set)
                previous(signum, frame)

            with contextlib.suppress(ValueError):  # not the main thread (an in-process test)
                signal.signal(sig, handler)


def sse(event: str, data: str, event_id: str | None = None) -> str:
    """One server-sent event; multi-line data becomes several data lines."""
    head = f"id: {event_id}\n" if event_id else ""
    lines = "".join(f"data: {line}\n" for line in (data.splitlines() or [""]))
    return f"{head}event: {event}\n{lines}\n"


async def parse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str] | None]:
    """(event type, data) per event of an SSE body; None for a comment (a heartbeat)."""
    event = "message"
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            yield None
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


async def _until(lines: AsyncIterator[str], closing: asyncio.Event) -> AsyncIterator[str]:
    """The lines, until they end or `closing` is set."""
    iterator = lines.__aiter__()
    closed = asyncio.ensure_future(closing.wait())
    line: asyncio.Future[str] | None = None
    try:
        while True:
            line = asyncio.ensure_future(iterator.__anext__())
            await asyncio.wait({line, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not line.done():
                line.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await line
                return
            try:
                yield line.result()
            except StopAsyncIteration:
                return
    finally:
        closed.cancel()
        # Cancelled while it waits (the browser went away), the read it waits on must not
        # outlive it: left running, it fails once the upstream is closed, unretrieved.
        if line is not None and not line.done():
            line.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await line


def relay(
    notify: NotifyClient,
    token: str,
    last_event_id: str | None,
    render: Callable[[InboxItem], str],
    closing: asyncio.Event,
) -> AsyncIterator[str]:
    """The browser's event stream: notify's notifications as rendered inbox items.

    The upstream request is made up now, in the request's context (its X-Forwarded-For
    and request id); it is opened once the body runs, and closed when the body ends:
    also when the browser goes away, as the body is cancelled and closed then.
    """
    return _relay(notify.stream(token, last_event_id), render, closing)


async def _relay(
    upstream: AbstractAsyncContextManager[httpx.Response],
    render: Callable[[InboxItem], str],
    closing: asyncio.Event,
) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    try:
        async with upstream as response:
            if response.status_code in (401, 403):
                yield sse("signed-out", "sign in again for live alerts")
                return
            if response.status_code != 200:
                log.warning("live_upstream_refused", status=response.status_code)
                return  # the browser retries after RETRY_MS
            async for event in parse_events(_until(response.aiter_lines(), closing)):
                if event is None:
                    yield ": heartbeat\n\n"
                    continue
                kind, data = event
                if kind == "withdrawn":
                    # No id: the browser's Last-Event-ID stays its newest notification's.
                    if (withdrawn := withdrawn_event(data)) is not None:
                        yield sse("withdrawn", json.dumps(withdrawn))
                    continue
                if kind == "restored":
                    # No id either; the items come back rendered, in one event.
                    if (items := restored_items(data)) is not None and items:
                        yield sse("restored", "\n".join(render(item) for item in items))
                    continue
                if kind != "notification":
                    continue
                try:
                    item = InboxItem.model_validate_json(data)
                except ValidationError:
                    log.warning("live_item_unreadable")
                    continue
                yield sse("notification", render(item), item.id)
    except (httpx.HTTPError, OSError) as exc:
        # The browser reconnects after RETRY_MS and resumes from its Last-Event-ID.
        log.warning("live_upstream_failed", error=type(exc).__name__)
