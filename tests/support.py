"""Real processes for tests: redis-server on free loopback ports and the services."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis

from shared.auth import issue_token

ROOT = Path(__file__).resolve().parents[1]
JWT_SECRET = "test-secret-please-change-0123456789abcdef"
SERVICES = {"questions": 8001, "answers": 8002, "votes": 8003, "notify": 8004}


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token(sub: str, role: str = "patient", name: str = "", ttl_s: int = 3600) -> str:
    """A signed test token."""
    return issue_token(JWT_SECRET, sub, role, name or sub, ttl_s)


def auth(sub: str, role: str = "patient", name: str = "") -> dict[str, str]:
    """Authorization headers for a test user."""
    return {"Authorization": f"Bearer {token(sub, role, name)}"}


class RedisServer:
    """A redis-server child process on a free loopback port, stopped by its pid."""

    def __init__(
        self, appendonly: bool = False, port: int | None = None, extra: list[str] | None = None
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: run 'make install' (apt-get install redis-server)"
            )
        self.binary = binary
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="askdoc-redis-")
        self.appendonly = appendonly
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.dir,
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "no",
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    # AOF loading answers pings with LOADING errors until done.
                    client.dbsize()
                    return self
            except redis.exceptions.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, **kwargs)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class ServiceProcess:
    """One askdoc service run as `python -m services.<name>` with its own settings."""

    def __init__(self, name: str, redis_url: str, port: int | None = None, **env: str) -> None:
        self.name = name
        self.port = port or free_port()
        self.redis_url = redis_url
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.mkstemp(prefix=f"askdoc-{name}-", suffix=".log")[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True) -> ServiceProcess:
        env = {
            **os.environ,
            "ASKDOC_REDIS_URL": self.redis_url,
            "ASKDOC_JWT_SECRET": JWT_SECRET,
            "ASKDOC_HTTP_PORT": str(self.port),
            "ASKDOC_HTTP_HOST": "127.0.0.1",
            "ASKDOC_LOG_FORMAT": "json",
            "ASKDOC_CLAIM_IDLE_MS": "1500",
            "ASKDOC_POLLING_INTERVAL_MS": "50",
            "ASKDOC_RATE_LIMIT_WRITES": "100000",
            "ASKDOC_WEBHOOK_ALLOW_PRIVATE": "true",
            **self.env,
        }
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.logs()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout}s:\n{self.logs()[-3000:]}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no chance to finish or ack anything."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM and wait: a graceful stop."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc else 0


@contextlib.contextmanager
def running_services(
    redis_url: str, names: list[str] | None = None, **env: str
) -> Iterator[dict[str, ServiceProcess]]:
    """Start services (in parallel) and stop them all at the end."""
    procs = {n: ServiceProcess(n, redis_url, **env) for n in (names or list(SERVICES))}
    try:
        for p in procs.values():
            p.start(wait_ready=False)
        for p in procs.values():
            p.wait_ready()
        yield procs
    finally:
        for p in procs.values():
            p.terminate(10)


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
