"""The five services as processes on a real redis-server, the seed page played, and Chromium."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Playwright, sync_playwright

from tests.e2e.scenario import play_seed
from tests.support import ROOT, SERVICES, RedisServer, ServiceProcess, auth, running_services

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
# Where the tests save their screenshots: a temporary folder, so a test run leaves the
# tracked files alone; `make screenshots` points it at docs/img to refresh the README's.
SCREENSHOTS = Path(
    os.environ.get("ASKDOC_SCREENSHOTS_DIR") or Path(tempfile.gettempdir()) / "askdoc-screenshots"
)
# Questions on the seed's topics, so the seed page has "You might also like...".
RELATED = [
    ("Can fillers fix a lopsided smile after Bell's palsy?", ["fillers", "bells-palsy"]),
    ("Is Sculptra better than fillers for a sunken cheek?", ["sculptra", "fillers"]),
]


@dataclass
class Stack:
    """The running system: service URLs, the web's URL, and the played seed page."""

    web: str
    urls: dict[str, str]
    seed: dict[str, Any]
    procs: dict[str, ServiceProcess] = field(default_factory=dict)

    def api(self, method: str, service: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, self.urls[service] + path, timeout=10, **kwargs)
        assert response.status_code < 400, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response.json()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    server = RedisServer().start()
    try:
        # All five at once: the web needs only its peers' URLs to start, not the peers.
        with running_services(
            server.url, list(SERVICES), each={"web": {"ASKDOC_WEB_DEV_LOGIN": "true"}}
        ) as procs:
            urls = {name: proc.url for name, proc in procs.items() if name != "web"}
            for title, topics in RELATED:
                httpx.post(
                    urls["questions"] + "/questions",
                    headers=auth("patient-related"),
                    json={"title": title, "body": "Asked for the tests.", "topics": topics},
                    timeout=10,
                ).raise_for_status()
            seed = play_seed(urls)
            yield Stack(procs["web"].url, urls, seed, procs)
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert CHROMIUM.exists(), "Chromium is missing: run 'make install' (apt-get install chromium)"
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@contextlib.contextmanager
def person(
    browser: Browser,
    stack: Stack,
    sub: str | None = None,
    role: str = "patient",
    name: str = "",
    **options: Any,
) -> Iterator[BrowserContext]:
    """A browser of its own, signed in through POST /session with a bearer token (or not)."""
    context = browser.new_context(base_url=stack.web, **options)
    context.set_default_timeout(10_000)
    try:
        if sub is not None:
            reply = context.request.post("/session", headers=auth(sub, role, name))
            assert reply.status == 200, reply.text()
        yield context
    finally:
        context.close()


def until(check: Any, timeout: float = 10, what: str = "condition") -> Any:
    """Poll until check() is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
