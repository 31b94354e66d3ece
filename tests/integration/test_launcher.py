"""The one launcher: Redis with flags and a password, peers' URLs, stops by pid."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from askdoc_cli import launcher
from askdoc_cli.launcher import LaunchError, RedisProcess, ServiceSpec


def test_redis_with_a_password_refuses_clients_without_it() -> None:
    server = RedisProcess(password="s3cret-launcher", extra=["--maxmemory", "10mb"]).start()
    try:
        assert server.client().config_get("maxmemory")["maxmemory"] == str(10 * 1024 * 1024)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port).ping()
        assert redis.Redis.from_url(server.url).ping()
    finally:
        server.cleanup()
    assert not server.running()


def test_a_service_learns_its_peers_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ServiceSpec("front", 8000, peers={"ASKDOC_QUESTIONS_URL": "questions"})
    monkeypatch.setitem(launcher.SERVICES, "front", spec)
    urls = {"questions": "http://127.0.0.1:1234", "front": "http://127.0.0.1:1235"}
    assert launcher.peer_env("front", urls) == {"ASKDOC_QUESTIONS_URL": "http://127.0.0.1:1234"}
    with pytest.raises(LaunchError, match="needs questions"):
        launcher.peer_env("front", {"front": urls["front"]})


def test_free_ports_come_from_askdoc_free_ports_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(launcher.FREE_PORTS_VAR, "12000-12009")
    ports = [launcher.free_port() for _ in range(5)]
    assert all(12000 <= port <= 12009 for port in ports)
    assert len(set(ports)) == 5, "a port handed out lately was handed out again"
    assert launcher.free_port(ports[0]) == ports[0]  # a free preferred port still wins
    for bad in ("12000", "12009-12000", "80-90", "a-b"):
        monkeypatch.setenv(launcher.FREE_PORTS_VAR, bad)
        with pytest.raises(LaunchError, match=launcher.FREE_PORTS_VAR):
            launcher.free_port()
    monkeypatch.delenv(launcher.FREE_PORTS_VAR)
    assert launcher.free_port_range() is None
    assert launcher.free_port() > 0


def test_a_child_that_exits_before_ready_is_reported_with_its_logs(redis_url: str) -> None:
    service = launcher.ServiceProcess("votes", redis_url, "too-short-secret")
    service.spawn()
    try:
        with pytest.raises(LaunchError, match="votes exited"):
            launcher.wait_ready([service], timeout=30)
    finally:
        service.terminate(5)


def test_children_die_with_a_killed_launcher() -> None:
    """A SIGKILLed launcher (dev, a test run) leaves no Redis behind."""
    script = (
        "from askdoc_cli.launcher import RedisProcess\n"
        "import time\n"
        "server = RedisProcess(own_session=True).start()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=launcher.ROOT, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait(10)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)


def test_a_failed_start_leaves_nothing_running(redis_url: str) -> None:
    service = launcher.ServiceProcess("votes", redis_url, "s" * 32)
    with pytest.raises(LaunchError, match="not ready"):
        service.start(timeout=0.2)  # still importing: not ready in time
    assert not service.running()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"
