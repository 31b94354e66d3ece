"""End to end (issue 11): a live inbox stream ends when its token expires and a fresh
token resumes it; one user holds at most a set number of streams (more get 429). notify
runs as a process on its own redis-server."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support import RedisServer, ServiceProcess, auth, token


@pytest.fixture(scope="module")
def notify() -> Iterator[ServiceProcess]:
    server = RedisServer().start()
    service = ServiceProcess(
        "notify",
        server.url,
        ASKDOC_SSE_MAX_STREAMS_PER_USER="2",
        ASKDOC_SSE_HEARTBEAT_S="1",
    ).start(timeout=120)
    try:
        yield service
    finally:
        service.terminate(10)
        server.cleanup()


def test_a_stream_ends_when_its_token_expires_and_a_fresh_token_reconnects(
    notify: ServiceProcess,
) -> None:
    url = f"{notify.url}/inbox/stream"
    issued = time.time()
    short = {"Authorization": f"Bearer {token('dr-expiring', 'doctor', ttl_s=3)}"}
    started = time.monotonic()
    lines: list[str] = []
    with httpx.stream("GET", url, headers=short, timeout=httpx.Timeout(20.0)) as reply:
        assert reply.status_code == 200
        for line in reply.iter_lines():
            lines.append(line)
    took = time.monotonic() - started
    assert took < 10, f"the stream outlived its token by {took - 3:.1f} s"
    assert "event: token-expired" in lines
    # The client reconnects with a fresh token (Last-Event-ID as it had it) and is served.
    fresh = {**auth("dr-expiring", "doctor"), "Last-Event-ID": "n000000000000000000000000"}
    with httpx.stream("GET", url, headers=fresh, timeout=10) as again:
        assert again.status_code == 200
        assert next(again.iter_lines()).startswith("retry:")
    # An expired token is refused outright (half a second past its exp at the least; the
    # stream above already ran until then, so this rarely waits at all).
    time.sleep(max(0.0, issued + 3.5 - time.time()))
    assert httpx.get(url, headers=short, timeout=10).status_code == 401


def test_one_user_holds_at_most_the_set_number_of_streams(notify: ServiceProcess) -> None:
    url = f"{notify.url}/inbox/stream"
    mine = auth("dr-many", "doctor")
    readers = []  # a dropped line iterator would close its stream
    with contextlib.ExitStack() as open_streams:
        for _ in range(2):
            held = open_streams.enter_context(httpx.stream("GET", url, headers=mine, timeout=10))
            assert held.status_code == 200
            readers.append(held.iter_lines())
            next(readers[-1])  # the stream has begun: its slot is taken
        with httpx.stream("GET", url, headers=mine, timeout=10) as refused:
            assert refused.status_code == 429
            refused.read()
        assert refused.json()["error"]["code"] == "too_many_streams"
        assert int(refused.headers["retry-after"]) >= 1
        # Another user is not affected.
        with httpx.stream("GET", url, headers=auth("dr-other", "doctor"), timeout=10) as other:
            assert other.status_code == 200
    # Closed streams give their slots back.
    deadline = time.monotonic() + 10
    while True:
        with httpx.stream("GET", url, headers=mine, timeout=10) as again:
            if again.status_code == 200 or time.monotonic() > deadline:
                assert again.status_code == 200
                break
        time.sleep(0.2)
