"""Fixtures shared by all test layers."""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Iterator
from typing import Any

import httpx._transports.default as httpx_transports
import pytest

from askdoc_cli import launcher
from tests.support import JWT_SECRET, RedisServer

os.environ.setdefault("ASKDOC_JWT_SECRET", JWT_SECRET)

# Parallel workers (pytest-xdist) take their ports from disjoint ranges below the system's
# ephemeral ones (launcher.FREE_PORTS_VAR says why); a cluster node's bus port, 10000
# above its own, stays out of every range.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw"):
    _size = 10_000 // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    _low = 10_000 + int(_WORKER.removeprefix("gw")) * _size
    os.environ[launcher.FREE_PORTS_VAR] = f"{_low}-{_low + _size - 1}"

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long fault and load tests (marked slow) first, the rest in their order: on two
    workers (make test) one starts on them while the other takes everything else."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
