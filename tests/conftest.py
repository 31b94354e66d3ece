"""Fixtures shared by all test layers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import JWT_SECRET, RedisServer

os.environ.setdefault("ASKDOC_JWT_SECRET", JWT_SECRET)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One throwaway redis-server for the session (tests that kill Redis start their own)."""
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database on the session's redis-server."""
    redis_server.client().flushall()
    return redis_server.url
