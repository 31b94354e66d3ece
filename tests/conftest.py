"""Fixtures shared by all test layers."""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Iterator
from typing import Any

import httpx._transports.default as httpx_transports
import pytest

from tests.support import JWT_SECRET, RedisServer

os.environ.setdefault("ASKDOC_JWT_SECRET", JWT_SECRET)

# Every httpx.get/post and every httpx.Client builds a TLS context first, reading
# certifi's CA bundle: ~30 ms of CPU each, though the tests only speak plain HTTP to
# loopback. They make thousands of such calls (many in polling loops, beside the services
# they wait for), so the default context is built once and shared; any other `verify`
# or a client certificate still gets its own.
_create_ssl_context = httpx_transports.create_ssl_context


@functools.cache
def _default_ssl_context(trust_env: bool) -> ssl.SSLContext:
    return _create_ssl_context(verify=True, cert=None, trust_env=trust_env)


def _shared_ssl_context(
    verify: Any = True, cert: Any = None, trust_env: bool = True
) -> ssl.SSLContext:
    if verify is True and cert is None:
        return _default_ssl_context(trust_env)
    return _create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)


httpx_transports.create_ssl_context = _shared_ssl_context  # type: ignore[assignment]


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
