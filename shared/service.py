"""A service's runtime: its Redis client, broker and consumers, started with retries."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import uvicorn
from faststream.redis import RedisBroker
from redis.exceptions import RedisError

from shared import retention, streams, tracing
from shared.atomic import Committer
from shared.backoff import Backoff
from shared.consumer import EventConsumer, PollWatch
from shared.events import EVENT_BY_STREAM
from shared.logging import configure_logging, get_logger
from shared.metrics import GROUP_LAG, GROUP_PENDING, READY, STREAM_LENGTH
from shared.redis import connection_options, make_redis, safe_url
from shared.relay import Relay, outbox_key
from shared.retention import Trimmer
from shared.settings import Settings

log = get_logger("askdoc.service")

#: The collector's thresholds once a service is ready (CPython's are 700, 10, 10). Under
#: load the default young generation filled every few requests: collections took ~6% of
#: the questions service's CPU on POST /questions. A request's garbage is freed by
#: reference counting as it ends, so a larger young generation finds the same cycles in
#: a small fraction of the passes.
GC_THRESHOLDS = (20_000, 10, 10)


def make_broker(settings: Settings) -> RedisBroker:
    """The FastStream broker of a service (no connection until started)."""
    options: dict[str, Any] = {
        "graceful_timeout": settings.shutdown_grace_s,
        "logger": logging.getLogger("faststream"),
        "log_level": logging.DEBUG,
        **connection_options(settings),
    }
    if settings.redis_mode == "cluster":
        from faststream.redis import RedisClusterBroker  # type: ignore[attr-defined]

        broker: RedisBroker = RedisClusterBroker(settings.redis_url, **options)
        return broker
    return RedisBroker(settings.redis_url, **options)


class ServiceRuntime:
    """Everything a service holds open: Redis, broker, consumers, background tasks."""

    def __init__(self, service: str, settings: Settings) -> None:
        self.service = service
        self.tag = streams.slot_tag(streams.HOME_STREAM[service])
        self.settings = settings
        self.redis = make_redis(settings)
        cluster = settings.redis_mode == "cluster"
        # On a cluster, events for streams outside the home slot go through the relay.
        self.relay = Relay(self.redis, service, self.tag, settings) if cluster else None
        self.committer = Committer(self.redis, outbox_key(self.tag) if cluster else None)
        self.broker = make_broker(settings)
        self.consumer = EventConsumer(self.broker, self.redis, settings, service)
        self.polls = PollWatch(self.consumer.outage)
        self._declare_publishers()
        self.ready = False
        self._tasks: list[asyncio.Task[None]] = []
        #: Internal streams this service also trims, beside those it publishes (e.g.
        #: notify's outbox): the same rule, never past what its group has to read.
        self.trimmed_streams: list[str] = [outbox_key(self.tag)] if cluster else []
        self._broker_started = False
        # Blocking set-up (e.g. loading the gazetteer) run in a thread before readiness.
        self.warmups: list[Callable[[], Any]] = []
        # Redis set-up run once connected, before readiness (e.g. moving data to a new
        # layout); each is idempotent, and runs again from the start if Redis fails.
        self.startups: list[Callable[[], Awaitable[Any]]] = []
        # Work started once ready, beside the stream watchers, and cancelled at stop
        # (e.g. running a data move again while a rolling deploy finishes).
        self.background: list[Callable[[], Coroutine[Any, Any, None]]] = []

    def _declare_publishers(self) -> None:
        # Events are written by Lua scripts (atomically with state), not broker.publish;
        # declaring the publishers documents the wire form in the AsyncAPI document.
        for stream in (*streams.PUBLISHES[self.service], streams.DEAD_LETTER):
            event = EVENT_BY_STREAM[stream]
            self.broker.publisher(
                stream=stream,
                schema=event,
                # not `{service}:{stream}`: that is the title of the service's own consumer
                # group on a stream it also reads, and AsyncAPI keys channels by title
                title=f"{self.service}:{stream}:published",
                description=(event.__doc__ or "").strip()
                + " Each entry has one field, __data__, holding the event as JSON.",
            )

    async def start(self) -> None:
        """Start connecting in the background; readiness turns true once it works."""
        self._tasks.append(asyncio.create_task(self._connect_forever(), name="connect"))

    async def _connect_forever(self) -> None:
        pauses = Backoff(0.5, 10.0)
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.redis.ping()
                await self.consumer.ensure_groups()
                for startup in self.startups:
                    await startup()
                if self.consumer.subscriptions:
                    await self._start_broker()
                break
            except (RedisError, OSError) as exc:
                # One line per attempt, no traceback: an unreachable Redis is an
                # operational state, not a bug.
                delay = pauses.next()
                log.warning(
                    "redis_unreachable",
                    redis_url=safe_url(self.settings.redis_url),
                    attempt=attempt,
                    retry_in_s=round(delay, 2),
                    error=f"{type(exc).__name__}: {exc}"[:200],
                )
                await asyncio.sleep(delay)
        for warmup in self.warmups:
            await asyncio.to_thread(warmup)
        # Reference data loaded at start (the gazetteer: millions of objects) never dies;
        # freezing it keeps full GC passes from scanning it: they stalled requests ~200 ms.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        self.ready = True
        READY.labels(self.service).set(1)
        log.info("service_ready", consumer=self.settings.consumer_name)
        self._tasks.append(asyncio.create_task(self._watch_streams(), name="watch"))
        self._tasks.append(asyncio.create_task(self._trim_streams(), name="trim"))
        if self.relay is not None:
            self._tasks.append(asyncio.create_task(self.relay.run(), name="relay"))
        for work in self.background:
            name = getattr(work, "__name__", "background")
            self._tasks.append(asyncio.create_task(work(), name=name))

    async def _start_broker(self) -> None:
        if self.polls.last:
            self.polls.restart()  # a retry: the loops are new, their polls not late
        else:
            self.polls.watch(self.broker)  # once: it wraps each consumer loop's poll
        # Marked before it starts: a start cut short (a SIGTERM, a Redis error half way)
        # has opened a connection and started consume loops that must be closed.
        self._broker_started = True
        log.info("consumers_starting", subscribers=len(self.broker.subscribers))
        try:
            await self.broker.start()
        except (RedisError, OSError):
            # Closed before the next attempt starts it again: a retry on top of a half
            # start ran a second consume loop beside each one already started.
            await self._stop_broker()
            raise

    async def _stop_broker(self) -> None:
        # FastStream waits up to graceful_timeout for running handlers to finish, then
        # cancels its consume loops once and forgets them: one whose cancel was lost in
        # a Redis call read on. Each is cancelled again until it has ended.
        consuming = [task for sub in self.broker.subscribers for task in _tasks_of(sub)]
        await self.broker.stop()
        self._broker_started = False
        await end_tasks(consuming)

    async def _watch_streams(self) -> None:
        """Export stream lengths, pending and lag of this service's groups."""
        while True:
            try:
                for stream in self.consumer.subscriptions_streams():
                    await self.export_stream_metrics(stream, self.service)
                if self.relay is not None and await self.redis.exists(self.relay.outbox):
                    # The relay's outbox is a stream like the others: its backlog shows too.
                    await self.export_stream_metrics(self.relay.outbox, None)
            except (RedisError, OSError) as exc:
                log.warning("stream_watch_failed", error=str(exc)[:200])
            await asyncio.sleep(5)

    async def export_stream_metrics(self, stream: str, only: str | None) -> None:
        """Length of `stream`, pending and lag (-1: behind retention) of its groups (or of
        the group named `only`)."""
        info = await self.redis.xinfo_stream(stream)
        STREAM_LENGTH.labels(stream).set(int(info["length"]))
        for group in await self.redis.xinfo_groups(stream):
            if only is not None and group["name"] != only:
                continue
            GROUP_PENDING.labels(group["name"], stream).set(group["pending"])
            lag = await retention.group_lag(self.redis, stream, group, info)
            GROUP_LAG.labels(group["name"], stream).set(-1 if lag.entries is None else lag.entries)

    async def _trim_streams(self) -> None:
        """Trim the streams this service writes, never past what a group has to read."""
        trimmer = Trimmer(self.redis)
        s = self.settings
        while True:
            owned = (
                *streams.PUBLISHES.get(self.service, ()),
                streams.DEAD_LETTER,
                *self.trimmed_streams,
            )
            for stream in owned:
                try:
                    await trimmer.trim(stream, s.stream_maxlen, s.stream_max_bytes)
                except (RedisError, OSError) as exc:
                    log.warning("stream_trim_failed", stream=stream, error=str(exc)[:200])
            await asyncio.sleep(s.trim_interval_s)

    async def is_ready(self) -> bool:
        """Redis reachable now and every consumer loop polled lately."""
        if not self.ready:
            return False
        stalled = self.polls.stalled(self.settings.consumer_stall_s)
        if stalled:
            log.warning("consumer_stalled", loops=stalled, limit_s=self.settings.consumer_stall_s)
            return False
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), timeout=1))
        except (RedisError, OSError, TimeoutError):
            return False

    async def stop(self) -> None:
        """Finish in-flight work, then close connections."""
        # A handler waiting to run again while Redis is away gives up at once (its entry
        # stays pending): the stop does not wait out its retries.
        self.consumer.stop()
        self.ready = False
        READY.labels(self.service).set(0)
        await end_tasks(self._tasks)
        # A connect task that outlived its first cancel may have turned ready meanwhile.
        self.ready = False
        READY.labels(self.service).set(0)
        if self._broker_started:
            await self._stop_broker()
            try:
                finished = await self.consumer.finish_own_pending()
                if finished:
                    log.info("pending_finished_on_stop", entries=finished)
            except (RedisError, OSError) as exc:
                log.warning("pending_not_finished_on_stop", error=str(exc)[:200])
        await self.redis.aclose()
        log.info("service_stopped")


async def end_tasks(tasks: Sequence[asyncio.Task[Any]], every_s: float = 0.1) -> None:
    """Cancel the tasks, again every `every_s` until each has ended.

    One cancel is not enough: on Python 3.11 asyncio.wait_for loses a cancellation that
    arrives as the awaited work completes, and redis-py wraps every command's write in it.
    A watcher cancelled at that instant goes on to its next round, and awaiting it once
    waited forever (a SIGTERM just after readiness never ended the process). The list
    can grow meanwhile: a connect task that outlived its cancel starts the watchers.
    A repeated cancel would cut short a clean-up that awaits; these tasks have none.

    Cancelled itself meanwhile (a loop that ends its helper tasks as it is ended, by an
    end_tasks that cancels it again and again), it still ends them all first, then
    passes the cancellation on: given up half way, it left a helper running.
    """
    cancelled = False
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        try:
            await asyncio.wait(pending, timeout=every_s)
        except asyncio.CancelledError:
            cancelled = True
    for task in tasks:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning(
                "task_failed", task=task.get_name(), error=f"{type(exc).__name__}: {exc}"[:200]
            )
    if cancelled:
        raise asyncio.CancelledError


def _tasks_of(subscriber: Any) -> list[asyncio.Task[Any]]:
    # FastStream 0.7 keeps a subscriber's consume loops in `tasks` (see pyproject's pin).
    return list(getattr(subscriber, "tasks", ()))


def serve(app: Any, settings: Settings, default_port: int, service: str) -> None:
    """Run an ASGI app with uvicorn until SIGTERM/SIGINT, shutting down gracefully."""
    configure_logging(service, settings.log_format, settings.log_level)
    if tracing.setup(service):
        log.info("tracing_on", exporters=os.environ.get("OTEL_TRACES_EXPORTER", "otlp"))
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.port_or(default_port),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        lifespan="on",
    )
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        # Server.run picks uvloop (and httptools) when installed, as `uvicorn` itself does.
        server.run()
