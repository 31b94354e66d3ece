"""`askdoc dev`: Redis and the four services as child processes, their logs in one terminal.

Children run in their own session, so a terminal's Ctrl-C reaches only this process,
which then stops them in order: the services first (SIGTERM, so they finish in-flight
work while Redis is still up), Redis last; whatever outlives the timeout gets SIGKILL.
Every child is signalled by its pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO
from urllib.parse import urlsplit

import httpx
from rich.console import Console
from rich.text import Text

from shared.redis import safe_url

SERVICES = ("questions", "answers", "votes", "notify")
COLOURS = {
    "redis": "red",
    "questions": "cyan",
    "answers": "green",
    "votes": "magenta",
    "notify": "yellow",
}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
ROOT = Path(__file__).resolve().parents[1]


class DevError(Exception):
    """`askdoc dev` cannot go on; the message says why."""


@dataclass
class Child:
    """One child process and where it serves."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    stopped: bool = False


@dataclass
class Supervisor:
    """Starts children, prefixes their logs, and stops them all by pid."""

    console: Console
    stop_timeout: float
    children: list[Child] = field(default_factory=list)
    signals: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)
    _print_lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    # --- signals -------------------------------------------------------------------

    @contextlib.contextmanager
    def signals_handled(self) -> Iterator[None]:
        """SIGINT/SIGTERM ask for a stop; a second one makes the stop immediate."""

        def on_signal(signum: int, _: FrameType | None) -> None:
            self.signals += 1
            self.stopping.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    # --- output --------------------------------------------------------------------

    def say(self, message: str | Text) -> None:
        """One line of our own, never interleaved with a child's line."""
        with self._print_lock:
            self.console.print(message)

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        prefix = f"{name:<9} | "
        colour = COLOURS.get(name, "white")
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            with self._print_lock:
                self.console.print(Text.assemble((prefix, colour), line))
        stream.close()

    # --- children ------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], url: str, env: dict[str, str]) -> Child:
        """Start a child in its own session, its output piped to our prefixed log."""
        # argv is built here from sys.executable / redis-server and fixed module names.
        proc = subprocess.Popen(  # noqa: S603
            argv,
            cwd=ROOT if (ROOT / "services").is_dir() else None,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = Child(name, proc, url)
        self.children.append(child)
        assert proc.stdout is not None
        thread = threading.Thread(target=self._pump, args=(name, proc.stdout), daemon=True)
        thread.start()
        self._threads.append(thread)
        self.say(
            Text.assemble(
                ("started ", "bold"),
                (f"{name:<9}", COLOURS.get(name, "white")),
                f" pid {proc.pid}  {url}",
            )
        )
        return child

    def exited(self) -> Child | None:
        """A child that exited on its own, if any."""
        for child in self.children:
            if not child.stopped and child.proc.poll() is not None:
                return child
        return None

    def stop_all(self) -> None:
        """Services first, then Redis: SIGTERM by pid, SIGKILL after the timeout."""
        services = [c for c in self.children if c.name != "redis"]
        redis = [c for c in self.children if c.name == "redis"]
        for batch in (services, redis):
            self._stop(batch)
        for thread in self._threads:
            thread.join(timeout=2)

    def _stop(self, children: list[Child]) -> None:
        for child in children:
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in children:
            while child.proc.poll() is None and time.monotonic() < deadline:
                if self.signals >= 2:  # asked twice: do not wait
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(timeout=0.1)
            if child.proc.poll() is None:
                self.say(f"{child.name} (pid {child.proc.pid}) did not stop in time: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
            child.stopped = True
            code = child.proc.returncode
            how = f"exit {code}" if code >= 0 else f"ended by {signal.Signals(-code).name}"
            self.say(f"stopped {child.name:<9} pid {child.proc.pid} ({how})")


def listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def start_redis(
    sup: Supervisor, url: str, data_dir: Path | None
) -> tempfile.TemporaryDirectory[str] | None:
    """Start redis-server (AOF on) for `url` unless something already listens there."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if listening(host, port):
        sup.say(f"using the Redis already listening at {host}:{port}")
        return None
    if host not in LOOPBACK:
        raise DevError(f"nothing listens at {host}:{port}, and dev starts Redis only on loopback")
    binary = shutil.which("redis-server")
    if binary is None:
        raise DevError(
            "redis-server is not installed: run 'make install' or apt-get install redis-server"
        )
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="askdoc-dev-redis-")
        data_dir = Path(tmp.name)
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--protected-mode",
        "no",
        "--loglevel",
        "warning",
    ]
    if parts.password:
        # The services AUTH with the URL's password; a 0600 config file keeps it out of `ps`.
        conf = data_dir / "askdoc-dev-redis.conf"
        conf.touch(mode=0o600)
        conf.write_text(f"requirepass {parts.password}\n")
        argv.insert(1, str(conf))
    where = f"{safe_url(url)} (AOF in {data_dir})"
    child = sup.spawn("redis", argv, where, dict(os.environ))
    deadline = time.monotonic() + 10
    while not listening("127.0.0.1", port):
        if child.proc.poll() is not None:
            raise DevError(f"redis-server exited with code {child.proc.returncode}")
        if time.monotonic() > deadline:
            raise DevError(f"redis-server did not listen on port {port} in 10 s")
        time.sleep(0.05)
    return tmp


def service_env(redis_url: str, secret: str, port: int) -> dict[str, str]:
    """A service's environment: ours, plus where Redis is, the secret and its port."""
    env = dict(os.environ)
    env.setdefault("ASKDOC_LOG_FORMAT", "console")
    env.setdefault("ASKDOC_HTTP_HOST", "127.0.0.1")
    env.update(
        {
            "ASKDOC_REDIS_URL": redis_url,
            "ASKDOC_JWT_SECRET": secret,
            "ASKDOC_HTTP_PORT": str(port),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def wait_ready(sup: Supervisor, services: list[Child], timeout: float) -> bool:
    """Poll each service's /readyz until all answer 200; False if a stop was asked for."""
    waiting = {c.name: c for c in services}
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1) as client:
        while waiting:
            if sup.stopping.is_set():
                return False
            dead = sup.exited()
            if dead is not None:
                raise DevError(
                    f"{dead.name} exited with code {dead.proc.returncode} before it was ready"
                )
            for name, child in list(waiting.items()):
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{child.url}/readyz").status_code == 200:
                        del waiting[name]
                        sup.say(Text.assemble(("ready   ", "bold green"), f"{name:<9} {child.url}"))
            if time.monotonic() > deadline:
                raise DevError(f"not ready in {timeout:.0f} s: {', '.join(waiting)}")
            sup.stopping.wait(0.5)
    return True


def run(
    console: Console,
    redis_url: str,
    secret: str,
    base_port: int,
    names: list[str],
    data_dir: Path | None,
    ready_timeout: float,
    stop_timeout: float,
) -> int:
    """Run everything until a signal or a child's death; the exit code."""
    sup = Supervisor(console, stop_timeout)
    ports = {name: base_port + SERVICES.index(name) for name in names}
    busy = [f"{p} ({n})" for n, p in ports.items() if listening("127.0.0.1", p)]
    if busy:
        raise DevError(f"port {', '.join(busy)} already in use; pick others with --base-port")
    tmp = None
    code = 0
    with sup.signals_handled():
        try:
            tmp = start_redis(sup, redis_url, data_dir)
            services = [
                sup.spawn(
                    name,
                    [sys.executable, "-m", f"services.{name}"],
                    f"http://127.0.0.1:{port}",
                    service_env(redis_url, secret, port),
                )
                for name, port in ports.items()
            ]
            if wait_ready(sup, services, ready_timeout):
                sup.say(Text("all services ready; Ctrl-C stops everything", style="bold green"))
            while not sup.stopping.wait(0.5):
                dead = sup.exited()
                if dead is not None:
                    sup.say(
                        Text(
                            f"{dead.name} exited with code {dead.proc.returncode}; "
                            "stopping everything",
                            style="bold red",
                        )
                    )
                    code = 1
                    break
        except DevError as exc:
            sup.say(Text.assemble(("error: ", "bold red"), str(exc)))
            code = 1
        finally:
            sup.say("stopping: services first, then Redis")
            sup.stop_all()
            if tmp is not None:
                tmp.cleanup()
    return code
