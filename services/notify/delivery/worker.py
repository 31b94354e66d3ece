"""External channels (webhook, e-mail), drained from the delivery outbox.

Every notification with an external channel gets an outbox entry in the same commit as
its inbox item, so a crash between the commit and the HTTP call loses nothing: the
entry stays pending in the outbox's consumer group and a live replica claims it after
`delivery_claim_idle_s` (a worker waiting to retry keeps its entries from being
claimed). Each attempt carries the notification id as `webhook-id` (webhook) or in
the Message-ID (e-mail), so a receiver can drop a repeat; a channel already in a final
state is not tried again. The status of each channel is kept on the inbox item. An
entry that fails unexpectedly `max_deliveries` times goes to the dead letters.

A Redis step of a delivery that fails because Redis is away (down, restarting, loading)
is run again in place (`shared.outage.RetryInPlace`) while the entry is still surely
ours (half the claim idle time since it was read, claimed or last kept), so deliveries
in flight when Redis blinks go out as soon as it is back, not a claim later. Only the
Redis steps are: every one is a read or an idempotent write (status, ack). A send is
never run again for Redis: the whole entry is not retried in place, because the status
that keeps a channel from being sent twice is written after the send, and a run again
after that write failed would send again. The outage is logged once each way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import httpx
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError

from shared import tracing
from shared.backoff import Backoff
from shared.logging import get_logger
from shared.outage import (
    REDIS_AWAY,
    REDIS_UNAVAILABLE,
    RETRY_IN_PLACE_SHARE,
    RedisOutage,
    RetryInPlace,
)
from shared.service import end_tasks

from ..inbox.domain import digest_questions, without_hidden_lines
from ..metrics import DELIVERIES
from ..settings import NotifySettings
from . import domain
from .attempts import Attempt, GiveUp, Gone, Retry
from .mail import email_attempt
from .slots import DeliverySlots
from .store import OUTBOX_GROUP, Entry, OutboxStore
from .webhook import webhook_attempt

log = get_logger("askdoc.notify.delivery")

#: Why a delivery about an item a moderator hid before it went out is skipped.
HIDDEN = "item hidden by a moderator"

T = TypeVar("T")

#: A loop whose Redis call failed for Redis being away tries again after these.
AWAY_PAUSE_FIRST_S = 0.1
AWAY_PAUSE_CAP_S = 2.0
#: The stream label of the outbox's retries in place (askdoc_event_retries_in_place_total).
OUTBOX_METRIC_LABEL = "outbox"


class Notes(Protocol):
    """What delivery reads and writes of the inboxes: the item and its channel status."""

    async def notes(self, nids: Sequence[str]) -> list[dict[str, str]]:
        """The stored hashes of several notifications ({} for an expired one)."""
        ...

    async def set_delivery(self, nid: str, channel: str, status: str) -> None:
        """Record a channel's delivery status on the notification."""
        ...

    async def hidden(self, subjects: Sequence[tuple[str, str]]) -> list[bool]:
        """Whether a moderator hides each question ('q', id) or answer ('a', id) now."""
        ...


class Contacts(Protocol):
    """What delivery reads of the directory: the recipient's current contact data."""

    async def get(self, doctor_id: str) -> tuple[dict[str, Any], int] | None:
        """A stored profile (private fields included) and its version, or None."""
        ...


#: Told that a receiver is gone (410): switch the channel off and tell the recipient.
#: Arguments: recipient, channel, the notification whose delivery found out.
ChannelGone = Callable[[str, str, str], Awaitable[None]]


class _Interrupted(Exception):
    """Shutdown came while waiting to retry: leave the entry for another replica."""


class DeliveryWorker:
    """Drains the outbox: one task per notification, channels in parallel, with retries."""

    def __init__(
        self,
        outbox: OutboxStore,
        inbox: Notes,
        directory: Contacts,
        settings: NotifySettings,
        on_gone: ChannelGone | None = None,
        outage: RedisOutage | None = None,
    ) -> None:
        self.outbox = outbox
        self.inbox = inbox
        self.directory = directory
        self.settings = settings
        self.on_gone = on_gone
        self.consumer = settings.consumer_name
        self.slots = DeliverySlots(settings.delivery_concurrency, settings.webhook_host_slots)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._stop = asyncio.Event()
        self._http: httpx.AsyncClient | None = None
        #: The service's outage log (one line each way), shared with its consumers.
        self.outage = outage or RedisOutage(OUTBOX_GROUP)
        self.in_place = RetryInPlace(self.outage, OUTBOX_GROUP)
        self._retry_budget_s = settings.delivery_claim_idle_s * RETRY_IN_PLACE_SHARE
        #: When each entry in hand was last surely ours (read, claimed or kept; monotonic).
        self._ours_since: dict[str, float] = {}
        #: Set when a read failed for Redis being away: a read whose reply was lost may
        #: have handed this consumer entries it never saw.
        self._reread_own = False
        # httpx logs every request's full URL at INFO; a webhook URL may carry a token.
        logging.getLogger("httpx").setLevel(logging.WARNING)

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared HTTP client (redirects are not followed: they could lead inside)."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=self.settings.webhook_timeout_s, follow_redirects=False
            )
        return self._http

    # --- the loops ---------------------------------------------------------------------

    async def run(self) -> None:
        """Read new outbox entries and claim abandoned ones until stopped."""
        await self._forever(self._ensure_group, once=True)
        claimer = asyncio.create_task(
            self._forever(self._claim_once, pause_s=1.0), name="delivery-claimer"
        )
        try:
            await self._forever(self._read_once)
        finally:
            # Cancelled until it ends: one cancel can be lost in a Redis call (see
            # end_tasks), and the claimer would claim on after the stop.
            await end_tasks([claimer])

    async def _forever(
        self, step: Callable[[], Awaitable[bool]], pause_s: float = 0.0, once: bool = False
    ) -> None:
        """`step()` until stopped; it says whether it called Redis (one that did not, with
        no room for more deliveries, proves nothing about an outage's end)."""
        pauses = Backoff(0.5, 10.0)
        away = Backoff(AWAY_PAUSE_FIRST_S, AWAY_PAUSE_CAP_S)
        while not self._stopping:
            started = time.monotonic()
            try:
                if await step():
                    pauses.reset()
                    away.reset()
                    self.outage.worked(started)
                if once:
                    return
            except (*REDIS_AWAY, OSError) as exc:
                # Said once for the whole outage; tried again soon, so the loops read
                # again within a moment of Redis being back.
                self.outage.failed(exc)
                await asyncio.sleep(away.next())
                continue
            except RedisError as exc:
                delay = pauses.next()
                log.warning(
                    "delivery_loop_failed", error=str(exc)[:200], retry_in_s=round(delay, 2)
                )
                await asyncio.sleep(delay)
                continue
            if pause_s:
                await asyncio.sleep(pause_s)

    def _free(self) -> int:
        # Notifications held (sending or waiting to retry); sends are bounded by the slots.
        return self.settings.delivery_backlog - len(self._tasks)

    async def _ensure_group(self) -> bool:
        await self.outbox.ensure_group()
        return True

    async def _read_once(self) -> bool:
        free = min(self._free(), 100)
        if free <= 0:
            await asyncio.sleep(0.05)
            return False
        if self._reread_own:
            # Ours but never seen: handed out by a read whose reply was lost. Those in
            # hand are skipped (and counted in, so they crowd none out); the rest would
            # otherwise wait for the claim.
            own = await self.outbox.read_own(self.consumer, free + len(self._ours_since))
            self._reread_own = False
            for entry_id, fields in own:
                if entry_id not in self._ours_since and fields:
                    self._spawn(entry_id, fields)
            return True
        try:
            entries = await self.outbox.read(self.consumer, free, block_ms=1000)
        except REDIS_AWAY:
            self._reread_own = True
            raise
        for entry_id, fields in entries:
            self._spawn(entry_id, fields)
        return True

    async def _claim_once(self) -> bool:
        free = min(self._free(), 20)
        if free <= 0:
            return False
        idle_ms = int(self.settings.delivery_claim_idle_s * 1000)
        entries: list[Entry] = await self.outbox.claim(self.consumer, idle_ms, free)
        if entries:
            log.info("deliveries_claimed", count=len(entries))
        for entry_id, fields in entries:
            self._spawn(entry_id, fields)
        return True

    def _spawn(self, entry_id: str, fields: dict[str, str]) -> None:
        if entry_id in self._ours_since:
            return  # in hand already
        self._ours_since[entry_id] = time.monotonic()  # just read or claimed
        task = asyncio.create_task(self._deliver(entry_id, fields))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self, grace_s: float) -> None:
        """Stop taking entries; let deliveries in flight finish (up to `grace_s`)."""
        self._stopping = True
        self._stop.set()
        self.in_place.stop()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            # Left pending in the outbox; another replica claims them. Cancelled until
            # each has ended: one whose cancel was lost in a Redis call went on
            # delivering after the stop, on a connection about to close.
            await end_tasks(list(pending))
        if self._http is not None:
            await self._http.aclose()

    # --- one notification ----------------------------------------------------------------

    async def _redis(self, entry_id: str, step: Callable[[], Awaitable[T]]) -> T:
        """A Redis step of a delivery (a read or an idempotent write, never a send), run
        again in place while Redis is away and the entry is still surely ours."""
        deadline = self._ours_since.get(entry_id, time.monotonic()) + self._retry_budget_s
        return await self.in_place.run(step, deadline, OUTBOX_METRIC_LABEL)

    async def _deliver(self, entry_id: str, fields: dict[str, str]) -> None:
        try:
            await self._deliver_held(entry_id, fields)
        finally:
            self._ours_since.pop(entry_id, None)

    async def _deliver_held(self, entry_id: str, fields: dict[str, str]) -> None:
        nid = fields.get("nid", "")
        deliveries = 1
        try:
            deliveries = await self._redis(entry_id, lambda: self.outbox.deliveries(entry_id))
            if deliveries > self.settings.max_deliveries:
                # Handed out more often than allowed without ever finishing: whatever it
                # does to a worker (a crash, a kill), it must not do it forever.
                await self._give_up(entry_id, fields, "never finished", deliveries)
                return
            with tracing.span("notify deliver", parent=fields.get("traceparent")):
                await self._deliver_entry(entry_id, fields)
        except _Interrupted:
            log.info("delivery_interrupted", notification_id=nid)
        except REDIS_UNAVAILABLE as exc:
            # Not acked (Redis full, or away longer than the entry is surely ours): the
            # entry is claimed and tried again after the idle time.
            log.warning("delivery_entry_failed", notification_id=nid, error=str(exc)[:200])
        except Exception as exc:
            log.exception("delivery_entry_crashed", notification_id=nid, deliveries=deliveries)
            if deliveries >= self.settings.max_deliveries:
                with contextlib.suppress(RedisError, OSError):
                    await self._give_up(
                        entry_id, fields, f"{type(exc).__name__}: {exc}", deliveries
                    )

    async def _give_up(
        self, entry_id: str, fields: dict[str, str], error: str, deliveries: int
    ) -> None:
        await self.outbox.dead_letter(self.consumer, entry_id, fields, error, deliveries)
        log.error(
            "delivery_dead_lettered",
            notification_id=fields.get("nid"),
            entry_id=entry_id,
            deliveries=deliveries,
            error=error[:300],
        )

    async def _deliver_entry(self, entry_id: str, fields: dict[str, str]) -> None:
        nid = fields.get("nid", "")
        recipient = fields.get("recipient", "")
        channels = [c for c in fields.get("channels", "").split(",") if c]
        [note] = await self._redis(entry_id, lambda: self.inbox.notes([nid])) if nid else [{}]
        item = await self._as_shown(entry_id, note)
        if note.get("hidden") == "1" or ("item" in note and item is None):
            # About something a moderator hid before it went out (a digest: every question
            # it lists): not sent (what went out before the hiding cannot be called back).
            for channel in channels:
                if note.get(f"d:{channel}") not in domain.DELIVERY_FINAL:
                    await self._final(entry_id, nid, channel, "skipped", HIDDEN)
        elif item is not None:
            kept = asyncio.Event()
            keeper = asyncio.create_task(self._keep_while_waiting(entry_id, kept))
            try:
                outcomes = await asyncio.gather(
                    *(
                        self._channel(
                            entry_id, channel, nid, recipient, item, note.get(f"d:{channel}")
                        )
                        for channel in channels
                    ),
                    return_exceptions=True,
                )
            finally:
                # The flag ends it even if the cancel is lost in its Redis call.
                kept.set()
                keeper.cancel()
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            if any(isinstance(e, _Interrupted) for e in errors):
                raise _Interrupted  # not acked: claimed by a live replica after the idle time
            if errors:
                raise errors[0]  # not acked: tried again after a claim
        await self._redis(entry_id, lambda: self.outbox.ack(entry_id))

    async def _as_shown(self, entry_id: str, note: dict[str, str]) -> dict[str, Any] | None:
        """The item to send: a digest less the lines of questions hidden since it was made
        (None when every one is); None for an expired notification."""
        if "item" not in note:
            return None
        item: dict[str, Any] = json.loads(note["item"])
        if questions := digest_questions(item):
            # Only a call to Redis goes through `_redis`: a step that makes none would tell
            # the outage log that Redis works again.
            flags = await self._redis(
                entry_id, lambda: self.inbox.hidden([("q", q) for q in questions])
            )
            hidden = {q for q, flag in zip(questions, flags, strict=True) if flag}
            return without_hidden_lines(item, hidden)
        return item

    async def _keep_while_waiting(self, entry_id: str, done: asyncio.Event) -> None:
        """Keep the entry ours while it waits for retries (they can take hours), until
        `done` is set."""
        every = max(self.settings.delivery_claim_idle_s / 3, 0.5)
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), every)
            if done.is_set():
                return
            started = time.monotonic()
            with contextlib.suppress(RedisError, OSError):
                await self.outbox.keep(self.consumer, entry_id)
                if not done.is_set():  # not after the entry is out of hand
                    self._ours_since[entry_id] = started

    async def _channel(
        self,
        entry_id: str,
        channel: str,
        nid: str,
        recipient: str,
        item: dict[str, Any],
        status: str | None,
    ) -> None:
        if status in domain.DELIVERY_FINAL:
            return  # done before a crash or a claim; never send twice on purpose
        profile = await self._redis(entry_id, lambda: self.directory.get(recipient))
        contact = profile[0] if profile else {}
        if channel == "webhook":
            url, secrets = contact.get("webhook_url"), signing_secrets(contact, time.time())
            if not url or not secrets or contact.get("webhook_off"):
                await self._final(entry_id, nid, channel, "skipped", "webhook no longer configured")
                return
            attempt = webhook_attempt(
                self.http, self.slots, self.settings, url, secrets, nid, recipient, item
            )
        elif channel == "email":
            address = contact.get("email")
            if not address or not self.settings.smtp_host or contact.get("email_off"):
                await self._final(entry_id, nid, channel, "skipped", "e-mail no longer configured")
                return
            send = email_attempt(self.settings, address, nid, recipient, item)

            async def attempt() -> None:
                async with self.slots.hold():
                    await send()

        else:
            await self._final(entry_id, nid, channel, "skipped", "unknown channel")
            return
        await self._with_retries(entry_id, channel, nid, recipient, _traced(channel, attempt))

    async def _with_retries(
        self, entry_id: str, channel: str, nid: str, recipient: str, attempt: Attempt
    ) -> None:
        s = self.settings
        delays = domain.retry_delays(s.webhook_max_attempts - 1, s.retry_base_s, s.retry_max_s)
        for number in range(1, s.webhook_max_attempts + 1):
            try:
                await attempt()
            except Gone as exc:
                if self.on_gone is not None:
                    await self.on_gone(recipient, channel, nid)
                await self._final(entry_id, nid, channel, "failed", str(exc), attempts=number)
                return
            except GiveUp as exc:
                status = "refused" if str(exc).startswith("refused:") else "failed"
                await self._final(entry_id, nid, channel, status, str(exc), attempts=number)
                return
            except Retry as exc:
                error, asked = str(exc), exc.after_s
            else:
                await self._final(entry_id, nid, channel, "delivered", None, attempts=number)
                return
            if number == s.webhook_max_attempts:
                await self._final(entry_id, nid, channel, "failed", error, attempts=number)
                return
            delay = domain.jittered(delays[number - 1], random.random())
            if asked is not None:
                delay = min(max(delay, asked), s.retry_max_s)  # the receiver's Retry-After
            await self._redis(entry_id, lambda: self.inbox.set_delivery(nid, channel, "retrying"))
            log.info(
                "delivery_retrying",
                notification_id=nid,
                channel=channel,
                attempt=number,
                error=error[:200],
                retry_in_s=round(delay, 2),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stopping:
                raise _Interrupted
            [note] = await self._redis(entry_id, lambda: self.inbox.notes([nid]))
            if note.get("hidden") == "1":
                # Hidden by a moderator while waiting to retry: not sent after all.
                await self._final(entry_id, nid, channel, "skipped", HIDDEN, attempts=number)
                return

    async def _final(
        self,
        entry_id: str,
        nid: str,
        channel: str,
        status: str,
        error: str | None,
        attempts: int = 0,
    ) -> None:
        # After a send, this write is what keeps the channel from being sent again (by a
        # claim): retried in place, a blip between the send and it sends nothing twice.
        await self._redis(entry_id, lambda: self.inbox.set_delivery(nid, channel, status))
        DELIVERIES.labels(channel, status).inc()
        line = log.info if status == "delivered" else log.warning
        line(
            "delivery_finished",
            notification_id=nid,
            channel=channel,
            status=status,
            attempts=attempts or None,
            error=error[:200] if error else None,
        )


def signing_secrets(contact: dict[str, Any], now: float) -> list[str]:
    """The secrets a delivery is signed with: the current one, and during a rotation's
    window the previous one too (receivers accept either)."""
    current = contact.get("webhook_secret")
    if not current:
        return []
    previous = contact.get("webhook_secret_previous")
    until = contact.get("webhook_secret_previous_until") or 0
    return [current, previous] if previous and until > now else [current]


def _traced(channel: str, attempt: Attempt) -> Attempt:
    """`attempt` inside a client span per try (the attempt itself when not tracing)."""
    if not tracing.enabled():
        return attempt

    async def traced() -> None:
        with tracing.span(f"{channel} send", SpanKind.CLIENT, **{"askdoc.channel": channel}):
            await attempt()

    return traced
