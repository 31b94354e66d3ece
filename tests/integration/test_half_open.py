"""A half-open or frozen Redis cannot hang a consumer; /readyz says when one stalls."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import redis

from shared import streams
from shared.events import WIRE_FIELD, AnswerPosted, DoctorCard
from shared.service import ServiceRuntime
from shared.settings import Settings
from tests.support import RedisServer, ServiceProcess, wait_for


class BlackholeProxy:
    """A TCP relay to Redis that can go silent as a partition does: no reply, no FIN.

    While `blackhole()` holds, nothing is relayed. After `heal()` new connections relay
    again, but the ones silenced stay silent for good, as a half-open connection does.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.silent = False
        self.dead: set[int] = set()
        self.sockets: list[socket.socket] = []
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            pair = id(client)
            self.sockets += [client, upstream]
            if self.silent:
                self.dead.add(pair)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, pair), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, pair: int) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if self.silent:
                    self.dead.add(pair)
                if pair not in self.dead:
                    sink.sendall(data)

    def blackhole(self) -> None:
        self.silent = True

    def heal(self) -> None:
        self.silent = False

    def close(self) -> None:
        self.closing = True
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.close()


def _ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/readyz", timeout=3).status_code == 200
    return False


def _consumed(client: redis.Redis, entry_id: str) -> bool:
    groups = {g["name"]: g for g in client.xinfo_groups(streams.ANSWER_POSTED)}
    votes = groups.get("votes")
    return bool(votes and votes["last-delivered-id"] == entry_id and votes["pending"] == 0)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


FAST_FAILURE = {
    "ASKDOC_REDIS_SOCKET_TIMEOUT_S": "2",
    "ASKDOC_REDIS_HEALTH_CHECK_S": "1",
    "ASKDOC_CONSUMER_STALL_S": "3",
}


def test_a_consumer_recovers_from_a_half_open_connection(server: RedisServer) -> None:
    proxy = BlackholeProxy(server.port)
    votes = ServiceProcess("votes", f"redis://127.0.0.1:{proxy.port}/0", **FAST_FAILURE)
    client = server.client()
    try:
        votes.start()
        first = client.xadd(streams.ANSWER_POSTED, {"junk": "1"})  # dead-lettered and acked
        wait_for(lambda: _consumed(client, first), what="votes to consume before the cut")

        proxy.blackhole()
        wait_for(lambda: not _ready(votes.url), timeout=15, what="/readyz to fail")
        proxy.heal()
        healed = time.monotonic()
        # Every connection open before the cut stays silent forever: only read timeouts
        # get the consumer onto a new one. Ready counts once the stall window has passed.
        wait_for(
            lambda: time.monotonic() > healed + 4 and _ready(votes.url),
            timeout=30,
            what="/readyz to recover",
        )
        after = client.xadd(streams.ANSWER_POSTED, {"junk": "2"})
        wait_for(lambda: _consumed(client, after), timeout=20, what="votes to consume again")
        assert votes.running()
    finally:
        votes.terminate(10)
        proxy.close()


def test_readyz_fails_while_redis_is_frozen_and_recovers(server: RedisServer) -> None:
    votes = ServiceProcess("votes", server.url, **FAST_FAILURE).start()
    client = server.client()
    try:
        server.pause()  # SIGSTOP: connections stay open, nothing answers
        try:
            wait_for(lambda: not _ready(votes.url), timeout=15, what="/readyz to fail")
        finally:
            server.resume()
        wait_for(lambda: _ready(votes.url), timeout=30, what="/readyz to recover")
        entry = client.xadd(streams.ANSWER_POSTED, {"junk": "1"})
        wait_for(lambda: _consumed(client, entry), timeout=20, what="votes to consume")
    finally:
        votes.terminate(10)


def _answer() -> AnswerPosted:
    return AnswerPosted(
        correlation_id="test",
        producer="answers",
        answer_id="a-1",
        question_id="q-1",
        body="An answer.",
        doctor=DoctorCard(id="d-1", name="Dr One"),
        created_at=datetime.now(UTC),
    )


async def _until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_readyz_fails_while_a_handler_holds_its_consumer_loop(redis_url: str) -> None:
    settings = Settings(
        redis_url=redis_url,
        jwt_secret="s" * 32,  # type: ignore[arg-type]
        consumer_stall_s=1.0,
        polling_interval_ms=50,
        shutdown_grace_s=2,
    )
    runtime = ServiceRuntime("votes", settings)
    release = asyncio.Event()

    @runtime.consumer.on(AnswerPosted)
    async def hold(_: AnswerPosted) -> None:
        await release.wait()

    await runtime.start()
    try:
        await _until(runtime.is_ready, 15)
        await runtime.redis.xadd(streams.ANSWER_POSTED, {WIRE_FIELD: _answer().model_dump_json()})

        async def stalled() -> bool:
            return not await runtime.is_ready()

        await _until(stalled, 10)
        assert runtime.polls.stalled(1.0)  # Redis answers pings; the loop is what hangs
        assert await runtime.redis.ping()
        release.set()
        await _until(runtime.is_ready, 10)
    finally:
        release.set()
        await runtime.stop()
