"""End to end (issue 11): a live inbox stream ends when its token expires and a fresh
token resumes it; one user holds at most a set number of streams (more get 429); a
browser leaving the web's relay closes the relay's stream at notify. notify (and the
web) run as processes, notify on its own redis-server."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import httpx
import pytest

from askdoc_cli import launcher
from tests.support import RedisServer, ServiceProcess, auth, free_port, token


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


def _upstream_slot(url: str, headers: dict[str, str]) -> int:
    """The status of one more stream of this user's straight at notify (closed at once)."""
    with httpx.stream("GET", url, headers=headers, timeout=10) as reply:
        return reply.status_code


def test_a_browser_leaving_the_webs_relay_closes_its_stream_at_notify(
    notify: ServiceProcess,
) -> None:
    url = f"{notify.url}/inbox/stream"
    mine = auth("dr-leaving", "doctor")
    # The web's other backends are not needed for the live inbox: a closed port each.
    nowhere = f"http://{launcher.HOST}:{free_port()}"
    urls = {"questions": nowhere, "answers": nowhere, "votes": nowhere, "notify": notify.url}
    web = ServiceProcess("web", "redis://127.0.0.1:1/0", **launcher.peer_env("web", urls))
    web.start(timeout=120)
    try:
        browsers = [httpx.Client(base_url=web.url, timeout=10) for _ in range(2)]
        readers = []  # a dropped line iterator would close its stream
        with contextlib.ExitStack() as open_streams:
            for browser in browsers:
                open_streams.callback(browser.close)
                assert browser.post("/session", headers=mine).status_code == 200
                held = open_streams.enter_context(browser.stream("GET", "/inbox/stream"))
                assert held.status_code == 200
                assert held.headers["content-type"].startswith("text/event-stream")
                assert held.headers["cache-control"] == "no-cache"
                assert held.headers["x-accel-buffering"] == "no"
                readers.append(held.iter_lines())
                assert next(readers[-1]).startswith("retry:")
                # The relay opens notify's stream after that line; notify's heartbeat,
                # passed on, shows it is open. A probe sent before could take the user's
                # last slot first, and the relay, refused, would end.
                first = next((line for line in readers[-1] if line), None)
                assert first == ": heartbeat", f"no stream at notify: {first!r}"
            # Both relays hold a stream at notify: the user's two slots are taken.
            deadline = time.monotonic() + 10
            while _upstream_slot(url, mine) != 429:
                assert time.monotonic() < deadline, "the relays never opened notify's stream"
                time.sleep(0.2)
        # The browsers have gone (their connections closed): the relays close theirs.
        deadline = time.monotonic() + 10
        while (status := _upstream_slot(url, mine)) != 200:
            assert status == 429
            assert time.monotonic() < deadline, (
                "a relay kept notify's stream after its browser left"
            )
            time.sleep(0.2)
        assert "never retrieved" not in web.logs(), "a relay left a read of notify's running"
    finally:
        web.terminate(10)
