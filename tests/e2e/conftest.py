"""What several e2e modules share: questions, answers, votes and notify as processes on one Redis.

A module that needs another set defines its own `world`, which wins over this one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import RedisServer, running_services


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Any]]:
    server = RedisServer().start()
    try:
        with running_services(server.url, ["questions", "answers", "votes", "notify"]) as procs:
            yield {"server": server, "urls": {n: p.url for n, p in procs.items()}}
    finally:
        server.cleanup()
