"""Real processes for tests: redis-server on free loopback ports and the services."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import zlib
from collections.abc import Iterator
from typing import Any, Self

import httpx
import redis

from askdoc_cli import launcher
from askdoc_cli.launcher import ROOT, SERVICES
from services.notify.directory.domain import npi_check_digit
from shared.auth import issue_token

__all__ = ["ROOT", "SERVICES"]

JWT_SECRET = "test-secret-please-change-0123456789abcdef"
WEBHOOK_SECRET_KEY = "YXNrZG9jLXRlc3QtZmVybmV0LWtleS0wMDAwMDAwMDA="
# Fast claims and polling, no write limit, webhooks to loopback receivers.
TEST_ENV = {
    "ASKDOC_LOG_FORMAT": "json",
    "ASKDOC_CLAIM_IDLE_MS": "1500",
    "ASKDOC_POLLING_INTERVAL_MS": "50",
    "ASKDOC_RATE_LIMIT_WRITES": "100000",
    "ASKDOC_ANON_READ_LIMIT": "100000",
    "ASKDOC_WEBHOOK_ALLOW_PRIVATE": "true",
    # A fixed Fernet key (32 bytes, url-safe base64) that seals webhook secrets in tests.
    "ASKDOC_WEBHOOK_SECRET_KEY": WEBHOOK_SECRET_KEY,
}


def free_port() -> int:
    """A TCP port free on loopback right now."""
    return launcher.free_port()


def token(sub: str, role: str = "patient", name: str = "", ttl_s: int = 3600) -> str:
    """A signed test token."""
    return issue_token(JWT_SECRET, sub, role, name or sub, ttl_s)


def auth(sub: str, role: str = "patient", name: str = "") -> dict[str, str]:
    """Authorization headers for a test user."""
    return {"Authorization": f"Bearer {token(sub, role, name)}"}


#: How long services may take to get ready (a loaded machine needs more: ASKDOC_TEST_READY_S).
READY_S = float(os.environ.get("ASKDOC_TEST_READY_S", "30"))


def made_up_npi(key: str) -> str:
    """A made-up NPI that passes the check: 9 digits hashed from `key`, then its check digit."""
    first = "2" + f"{zlib.crc32(key.encode()) % 10**8:08d}"
    return first + npi_check_digit(first)


def verified(profile: dict[str, Any], doctor_id: str) -> dict[str, Any]:
    """A profile body an admin PUTs to register a doctor already verified."""
    return {"npi": made_up_npi(doctor_id), **profile, "status": "verified"}


ADMIN = "admin-tests"


def admin_auth() -> dict[str, str]:
    """Authorization headers of the tests' admin."""
    return auth(ADMIN, "admin", "Test Admin")


LOS_ANGELES = {"city": "Los Angeles", "state": "CA"}


def doctor_profile(doctor_id: str, **changes: Any) -> dict[str, Any]:
    """A dermatologist's profile in Los Angeles (50 km radius), with `changes` on top."""
    body: dict[str, Any] = {
        "name": f"Dr {doctor_id}",
        "credentials": "MD",
        "specialties": ["dermatology"],
        "location": LOS_ANGELES,
        "radius_km": 50,
    }
    return {**body, **changes}


def register_doctor(notify_url: str, doctor_id: str, **changes: Any) -> dict[str, Any]:
    """An admin registers `doctor_id` verified at notify (only verified doctors are
    alerted and may answer); the profile is doctor_profile's. Returns the saved profile."""
    reply = httpx.put(
        f"{notify_url}/doctors/{doctor_id}",
        json=verified(doctor_profile(doctor_id, **changes), doctor_id),
        headers=admin_auth(),
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    saved: dict[str, Any] = reply.json()
    return saved


class RedisServer(launcher.RedisProcess):
    """A redis-server child process on a free loopback port, stopped by its pid."""

    def __init__(
        self,
        appendonly: bool = False,
        port: int | None = None,
        extra: list[str] | None = None,
        appendfsync: str = "everysec",
    ) -> None:
        super().__init__(port=port, appendonly=appendonly, extra=extra, appendfsync=appendfsync)


class ServiceProcess(launcher.ServiceProcess):
    """One askdoc service run as `python -m services.<name>` with the tests' settings."""

    def __init__(self, name: str, redis_url: str, port: int | None = None, **env: str) -> None:
        super().__init__(name, redis_url, JWT_SECRET, port, env={**TEST_ENV, **env})

    def start(self, wait_ready: bool = True, timeout: float | None = None) -> Self:
        """Start it; wait (READY_S unless told) until it is ready."""
        super().start(wait_ready, READY_S if timeout is None else timeout)
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait (READY_S unless told) until it is ready."""
        super().wait_ready(READY_S if timeout is None else timeout)


@contextlib.contextmanager
def running_services(
    redis_url: str,
    names: list[str] | None = None,
    each: dict[str, dict[str, str]] | None = None,
    **env: str,
) -> Iterator[dict[str, ServiceProcess]]:
    """Start services (in parallel) and stop them all at the end.

    `env` goes to every service, `each[name]` to that one only.
    """
    ports = {n: free_port() for n in names or SERVICES}
    urls = {n: f"http://{launcher.HOST}:{port}" for n, port in ports.items()}
    procs = {
        n: ServiceProcess(n, redis_url, port, **{**env, **(each or {}).get(n, {})})
        for n, port in ports.items()
    }
    for name, proc in procs.items():
        proc.env.update(launcher.peer_env(name, urls))
    try:
        for p in procs.values():
            p.start(wait_ready=False)
        # Each service used to get 30 s of its own; on a loaded machine they need it.
        launcher.wait_ready(procs.values(), timeout=max(READY_S, 60 * len(procs)))
        yield procs
    finally:
        launcher.stop_all(procs.values(), timeout=10)


@contextlib.contextmanager
def service_on_own_redis(name: str, **env: str) -> Iterator[tuple[RedisServer, ServiceProcess]]:
    """One service on its own redis-server (so no other test flushes it under the service)."""
    server = RedisServer().start()
    service = ServiceProcess(name, server.url, **env).start()
    try:
        yield server, service
    finally:
        service.terminate(10)
        server.cleanup()


def wait_for(
    predicate: Any, timeout: float = 15, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Poll until predicate() is truthy; return its value or fail with `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class RedisClusterProcesses:
    """A local Redis Cluster of three masters on free loopback ports."""

    def __init__(self, nodes: int = 3) -> None:
        # A node's cluster bus listens on its port + 10000, which must exist and be free.
        self.nodes = [
            RedisServer(
                port=_bus_safe_port(),
                extra=["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"],
            )
            for _ in range(nodes)
        ]
        for node in self.nodes:
            node.extra += ["--cluster-config-file", f"{node.dir}/nodes.conf"]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> RedisClusterProcesses:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli") or "redis-cli"
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        client = self.nodes[0].client()
        wait_for(lambda: _cluster_ok(client), timeout=20, what="the cluster to be ok")
        return self

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


def _cluster_ok(client: redis.Redis) -> bool:
    info = client.execute_command("CLUSTER", "INFO")
    return (
        info.get("cluster_state") == "ok"
        if isinstance(info, dict)
        else "cluster_state:ok" in str(info)
    )


def _bus_safe_port() -> int:
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
