"""The delivery policy every service consumes with, on FastStream and Redis Streams.

Per stream a service registers two subscribers in its own consumer group:

* the **reader** takes new entries in batches (`max_records`), runs the handler for each
  entry concurrently and XACKs exactly the entries whose effect committed;
* the **claimer** (XAUTOCLAIM after `claim_idle_ms`) takes entries left pending by a
  failed handler or a dead consumer, one at a time, and retries them; after
  `max_deliveries` it moves the entry to `askdoc.dead-letter`.

An entry that can never succeed (no ``__data__``, not JSON, wrong schema, unknown
``schema_version``, oversized) is dead-lettered at once. Handlers must be idempotent:
a claim can race a slow consumer, so an entry may run twice.

A handler (or an XACK) that fails because Redis is away (down, restarting, loading its
AOF) is run again in place after short jittered pauses, for up to half of
`claim_idle_ms` from the entry's delivery, so the events in flight when Redis blinks are
handled as soon as it is back rather than a claim later; only then is the entry left
pending for the claimer. A full Redis (maxmemory) is not retried in place: it lasts
until memory is freed, and the entry waits for the claimer. Neither failure dead-letters.
The consumers say once that they lost Redis and once that they have it back
(`RedisOutage`), not per failed call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from faststream import AckPolicy, Context
from faststream.redis import RedisBroker, StreamSub
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from redis import exceptions as redis_errors
from redis.exceptions import ResponseError

from shared import streams, tracing
from shared.atomic import Committer, Txn
from shared.backoff import Backoff
from shared.events import WIRE_FIELD, DeadLetter, Event
from shared.logging import bind_correlation_id, get_logger
from shared.metrics import (
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTERED,
    HANDLER_FAILURES,
    HANDLER_SECONDS,
)
from shared.outage import (
    REDIS_AWAY,
    REDIS_UNAVAILABLE,
    RETRY_IN_PLACE_SHARE,
    RedisOutage,
    RetryInPlace,
)
from shared.redis import RedisClient
from shared.settings import Settings

E = TypeVar("E", bound=Event)
T = TypeVar("T")
Handler = Callable[[Any], Awaitable[None]]
BatchHandler = Callable[[list[Any]], Awaitable[None]]

log = get_logger("askdoc.consumer")

#: A consume loop whose read failed for Redis being unavailable reads again after these
#: (FastStream's own loop would log an error with its traceback and wait a fixed 5 s).
POLL_PAUSE_FIRST_S = 0.1
POLL_PAUSE_CAP_S = 2.0


class PoisonEntry(Exception):
    """An entry that no retry can fix."""


@dataclass(frozen=True)
class Subscription:
    """One handled stream of a service."""

    stream: str
    event_type: type[Event]
    handler: Handler


async def _skip_decoding(*_: Any) -> None:
    # Entries are validated per entry below, so one bad entry cannot fail a batch.
    return None


class EventConsumer:
    """Registers a service's event handlers on its broker under the house policy."""

    def __init__(
        self, broker: RedisBroker, redis: RedisClient, settings: Settings, service: str
    ) -> None:
        self.broker = broker
        self.redis = redis
        self.settings = settings
        self.group = service
        self.committer = Committer(redis)
        self.subscriptions: list[Subscription] = []
        self.batch_handlers: dict[type[Event], BatchHandler] = {}
        self.outage = RedisOutage(service)
        self._retry_budget_s = settings.claim_idle_ms / 1000 * RETRY_IN_PLACE_SHARE
        self.in_place = RetryInPlace(self.outage, service)

    def stop(self) -> None:
        """No more retries in place: a handler waiting to run again gives up at once."""
        self.in_place.stop()

    def on(self, event_type: type[E]) -> Callable[[Callable[[E], Awaitable[None]]], Any]:
        """Decorate the idempotent handler of one event type."""

        def register(handler: Callable[[E], Awaitable[None]]) -> Any:
            self._register(Subscription(event_type.stream, event_type, handler))
            return handler

        return register

    def on_batch(
        self, event_type: type[E]
    ) -> Callable[[Callable[[list[E]], Awaitable[None]]], Any]:
        """Decorate a handler that takes a whole batch of an event type at once.

        The reader hands it every valid entry of a batch; the per-entry handler (`on`)
        stays for the claimer, and for each entry of a batch whose handler raised, so a
        failing entry is retried and dead-lettered on its own without holding up the
        rest. Both must be idempotent. With tracing on, entries go one by one, each in
        the trace of the request that caused it.
        """

        def register(handler: Callable[[list[E]], Awaitable[None]]) -> Any:
            self.batch_handlers[event_type] = handler
            return handler

        return register

    def _register(self, sub: Subscription) -> None:
        self.subscriptions.append(sub)
        s = self.settings
        consumer = s.consumer_name
        name = sub.event_type.__name__

        @self.broker.subscriber(
            stream=StreamSub(
                sub.stream,
                group=self.group,
                consumer=consumer,
                batch=True,
                max_records=s.max_records,
                polling_interval=s.polling_interval_ms,
            ),
            ack_policy=AckPolicy.MANUAL,
            decoder=_skip_decoding,
            title=f"{self.group}:{sub.stream}",
            description=f"{self.group} reads {name} entries in batches",
        )
        async def read(body: Any, message: Any = Context("message")) -> None:
            deadline = time.monotonic() + self._retry_budget_s  # just delivered
            raw = message.raw_message
            ids = [_text(i) for i in raw["message_ids"]]
            batch = self.batch_handlers.get(sub.event_type)
            if batch is not None and not tracing.enabled():
                done = await self._process_batch(sub, batch, ids, raw["data"], deadline)
                await self._ack_retrying(done, sub.stream, deadline)
                return
            outcomes = await asyncio.gather(
                *(
                    self._process(sub, i, fields, 1, deadline)
                    for i, fields in zip(ids, raw["data"], strict=True)
                )
            )
            done = [i for i, ok in zip(ids, outcomes, strict=True) if ok]
            await self._ack_retrying(done, sub.stream, deadline)

        @self.broker.subscriber(
            stream=StreamSub(
                sub.stream,
                group=self.group,
                consumer=consumer,
                min_idle_time=s.claim_idle_ms,
                polling_interval=max(s.polling_interval_ms, min(s.claim_idle_ms // 4, 1000)),
            ),
            ack_policy=AckPolicy.MANUAL,
            decoder=_skip_decoding,
            include_in_schema=False,
        )
        async def claim(body: Any, message: Any = Context("message")) -> None:
            deadline = time.monotonic() + self._retry_budget_s  # just claimed
            raw = message.raw_message
            entry_id = _text(raw["message_ids"][0])
            count = await self._retrying(
                lambda: self._delivery_count(sub.stream, entry_id), deadline, sub.stream
            )
            if await self._process(sub, entry_id, raw["data"], count, deadline):
                await self._ack_retrying([entry_id], sub.stream, deadline)

    async def _retrying(self, run: Callable[[], Awaitable[T]], deadline: float, stream: str) -> T:
        """`run()`, run again in place while Redis is away until `deadline` (see
        `shared.outage.RetryInPlace`)."""
        return await self.in_place.run(run, deadline, stream)

    async def _process(
        self,
        sub: Subscription,
        entry_id: str,
        fields: dict[bytes, bytes],
        deliveries: int,
        deadline: float,
    ) -> bool:
        """Run one entry's handler; True when the entry is done and may be acked.

        While Redis is unavailable the handler runs again in place until `deadline`.
        """
        started = time.perf_counter()
        try:
            event = self._decode(sub, fields)
        except PoisonEntry as exc:
            await self._dead_letter(sub.stream, entry_id, fields, str(exc), deliveries)
            return True
        bind_correlation_id(
            event.correlation_id, event_id=str(event.event_id), event_type=event.event_type
        )
        try:
            with tracing.span(
                f"{sub.stream} process",
                SpanKind.CONSUMER,
                parent=event.traceparent,
                **{
                    "messaging.system": "redis",
                    "messaging.destination.name": sub.stream,
                    "messaging.consumer.group.name": self.group,
                    "messaging.message.id": entry_id,
                    "askdoc.deliveries": deliveries,
                },
            ):
                await self._retrying(lambda: sub.handler(event), deadline, sub.stream)
        except Exception as exc:
            HANDLER_FAILURES.labels(self.group, sub.stream).inc()
            error = f"{type(exc).__name__}: {exc}"
            unavailable = isinstance(exc, REDIS_UNAVAILABLE)
            if deliveries >= self.settings.max_deliveries and not unavailable:
                await self._dead_letter(sub.stream, entry_id, fields, error, deliveries)
                return True
            log.warning(
                "event_handler_failed",
                stream=sub.stream,
                entry_id=entry_id,
                deliveries=deliveries,
                error=error[:300],
                retry_after_ms=self.settings.claim_idle_ms,
            )
            return False
        EVENTS_CONSUMED.labels(self.group, sub.stream).inc()
        HANDLER_SECONDS.labels(self.group, sub.stream).observe(time.perf_counter() - started)
        return True

    async def _process_batch(
        self,
        sub: Subscription,
        batch: BatchHandler,
        ids: list[str],
        entries: list[dict[bytes, bytes]],
        deadline: float,
    ) -> list[str]:
        """Run a batch handler over a batch's valid entries; the ids that may be acked.

        While Redis is unavailable the batch runs again in place until `deadline`.
        """
        started = time.perf_counter()
        done: list[str] = []
        events: list[Event] = []
        kept: list[tuple[str, dict[bytes, bytes]]] = []
        for entry_id, fields in zip(ids, entries, strict=True):
            try:
                events.append(self._decode(sub, fields))
            except PoisonEntry as exc:
                await self._dead_letter(sub.stream, entry_id, fields, str(exc), 1)
                done.append(entry_id)
                continue
            kept.append((entry_id, fields))
        if not events:
            return done
        try:
            await self._retrying(lambda: batch(events), deadline, sub.stream)
        except Exception as exc:
            log.warning(
                "event_batch_failed",
                stream=sub.stream,
                entries=len(events),
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
            if isinstance(exc, REDIS_UNAVAILABLE):
                # No entry is at fault, and Redis stayed away all the time there was: each
                # alone would fail the same. They stay pending for the claimer.
                HANDLER_FAILURES.labels(self.group, sub.stream).inc(len(events))
                return done
            # One entry may be at fault: each goes on alone, under the per-entry rules.
            outcomes = await asyncio.gather(
                *(self._process(sub, i, f, 1, deadline) for i, f in kept)
            )
            return done + [i for (i, _), ok in zip(kept, outcomes, strict=True) if ok]
        EVENTS_CONSUMED.labels(self.group, sub.stream).inc(len(events))
        HANDLER_SECONDS.labels(self.group, sub.stream).observe(
            (time.perf_counter() - started) / len(events)
        )
        return done + [i for i, _ in kept]

    def _decode(self, sub: Subscription, fields: dict[bytes, bytes]) -> Event:
        data = fields.get(WIRE_FIELD.encode())
        if data is None:
            raise PoisonEntry(f"entry has no {WIRE_FIELD} field")
        if len(data) > self.settings.max_entry_bytes:
            raise PoisonEntry(f"entry is {len(data)} bytes, over {self.settings.max_entry_bytes}")
        try:
            return sub.event_type.model_validate_json(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}"
                for err in exc.errors()[:5]
            )
            raise PoisonEntry(f"not a valid {sub.event_type.__name__}: {problems}") from None

    async def _ack(self, ids: list[str], stream: str) -> None:
        if ids:
            await self.redis.xack(stream, self.group, *ids)

    async def _ack_retrying(self, ids: list[str], stream: str, deadline: float) -> None:
        """XACK (idempotent), again while Redis is unavailable until `deadline`; entries
        still not acked then stay pending, and the claimer runs them again."""
        if not ids:
            return  # no call: it would tell the outage nothing
        try:
            await self._retrying(lambda: self._ack(ids, stream), deadline, stream)
        except REDIS_UNAVAILABLE as exc:
            log.warning(
                "event_ack_failed",
                stream=stream,
                entries=len(ids),
                error=f"{type(exc).__name__}: {exc}"[:300],
                retry_after_ms=self.settings.claim_idle_ms,
            )

    async def _delivery_count(self, stream: str, entry_id: str) -> int:
        pending = await self.redis.xpending_range(stream, self.group, entry_id, entry_id, 1)
        return int(pending[0]["times_delivered"]) if pending else 1

    async def _dead_letter(
        self, stream: str, entry_id: str, fields: dict[bytes, bytes], error: str, deliveries: int
    ) -> None:
        letter = DeadLetter(
            correlation_id=bind_correlation_id(None),
            producer=self.group,
            source_stream=stream,
            entry_id=entry_id,
            group=self.group,
            consumer=self.settings.consumer_name,
            fields={_text(k): _text(v)[:4096] for k, v in fields.items()},
            error=error[:1000],
            delivery_count=deliveries,
        )
        # The marker makes a dead letter unique per (group, entry) even if we die before XACK.
        marker = f"{streams.slot_tag(streams.DEAD_LETTER)}:dlq:{self.group}:{stream}:{entry_id}"
        txn = Txn().absent("dead_letter", marker, ttl_s=self.settings.dedupe_ttl_s)
        await self.committer.commit(txn.publish(letter))
        EVENTS_DEAD_LETTERED.labels(self.group, stream).inc()
        log.error(
            "event_dead_lettered",
            stream=stream,
            entry_id=entry_id,
            deliveries=deliveries,
            error=error[:300],
        )

    async def finish_own_pending(self) -> int:
        """Handle what this consumer was given but had not handled when it was stopped.

        A reader stopped mid-XREADGROUP may already own a batch it never processed; left
        alone, those entries would wait out the claim time and be delivered again.
        """
        finished = 0
        for sub in self.subscriptions:
            reply = await self.redis.xreadgroup(
                self.group, self.settings.consumer_name, {sub.stream: "0"}, count=1000
            )
            for _, entries in reply or []:
                done = []
                for entry_id, fields in entries:
                    if not fields:
                        continue  # trimmed away while pending: nothing left to handle
                    raw = {
                        k.encode() if isinstance(k, str) else k: v.encode()
                        if isinstance(v, str)
                        else v
                        for k, v in fields.items()
                    }
                    deliveries = await self._delivery_count(sub.stream, entry_id)
                    # Stopping: one run each, no retry in place.
                    if await self._process(sub, entry_id, raw, deliveries, time.monotonic()):
                        done.append(entry_id)
                await self._ack(done, sub.stream)
                finished += len(done)
        return finished

    async def ensure_groups(self) -> None:
        """Create the service's missing groups, skipping events older than the dedupe window.

        Handlers are idempotent only while their dedupe markers live (`dedupe_ttl_s`); a
        new or renamed group that read the whole retained history would redo (re-alert)
        everything older. Events within the window are read: their markers, if any, are
        still there. Not `$`: events published before the group's first start (a deploy
        where the producer starts first) would be lost.
        """
        for stream in self.subscriptions_streams():
            start = await self.first_start_id(stream)
            try:
                await self.redis.xgroup_create(stream, self.group, id=start, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
                continue
            log.info("consumer_group_created", stream=stream, group=self.group, start_id=start)

    async def first_start_id(self, stream: str) -> str:
        """Where a new group starts: just before the dedupe window, or 0 if nothing is older."""
        window_start = int(time.time() * 1000) - self.settings.dedupe_ttl_s * 1000
        oldest = await self.redis.xrange(stream, "-", "+", count=1)
        if not oldest or int(_text(oldest[0][0]).split("-")[0]) >= window_start:
            # Nothing to skip: from 0, Redis can count the group's lag.
            return "0"
        return f"{window_start}-0"

    def subscriptions_streams(self) -> list[str]:
        """The streams this service consumes."""
        return list(dict.fromkeys(s.stream for s in self.subscriptions))


class PollWatch:
    """When each consumer loop of a broker last finished a poll (read, then handle).

    It also takes a loop's reads that fail because Redis is unavailable: FastStream's loop
    logs each at error level with its traceback and waits a fixed 5 s before the next (so
    the readers lagged up to 5 s behind a Redis back after a blip). Here each is counted
    in `outage` (one warning, one info for the whole outage) and the loop reads again after
    a short jittered pause. Other errors go to FastStream's loop as before.
    """

    def __init__(self, outage: RedisOutage | None = None) -> None:
        self.last: dict[str, float] = {}
        self.outage = outage or RedisOutage("?")

    def watch(self, broker: RedisBroker) -> None:
        """Stamp every subscriber's polls from now on (call before the broker starts)."""
        now = time.monotonic()
        for index, subscriber in enumerate(broker.subscribers):
            stream = getattr(getattr(subscriber, "stream_sub", None), "name", "?")
            loop = f"{stream}#{index}"
            self.last[loop] = now
            # FastStream's loop calls `_get_msgs` once per poll; it returns after the
            # read (empty or not) and the handling. Pinned FastStream 0.7: see pyproject.
            poll = subscriber._get_msgs  # type: ignore[attr-defined]
            pauses = Backoff(POLL_PAUSE_FIRST_S, POLL_PAUSE_CAP_S)

            async def stamped(
                *args: Any,
                _poll: Any = poll,
                _loop: str = loop,
                _sub: Any = subscriber,
                _pauses: Backoff = pauses,
            ) -> None:
                started = time.monotonic()
                try:
                    await _poll(*args)
                except (*REDIS_AWAY, OSError) as exc:
                    if _sub.running:
                        self.outage.failed(exc)
                        await asyncio.sleep(_pauses.next())
                    # Not running: a read that outlived its cancel (Python 3.11's wait_for
                    # in redis-py can lose one: see shared.service.end_tasks) fails as the
                    # stopping broker closes its connection; that is the stop, not an error.
                    return
                except redis_errors.RedisError:
                    if _sub.running:
                        raise
                    return
                _pauses.reset()
                self.outage.worked(started)
                self.last[_loop] = time.monotonic()

            subscriber._get_msgs = stamped  # type: ignore[attr-defined]

    def restart(self) -> None:
        """Count every loop's wait from now (the broker is started again)."""
        now = time.monotonic()
        self.last = dict.fromkeys(self.last, now)

    def stalled(self, limit_s: float) -> list[str]:
        """The loops that have not finished a poll for `limit_s` seconds."""
        now = time.monotonic()
        return [loop for loop, at in self.last.items() if now - at > limit_s]


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
