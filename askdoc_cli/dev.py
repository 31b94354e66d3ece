"""`askdoc dev`: Redis and the five services as child processes, their logs in one terminal.

Children run in their own session, so a terminal's Ctrl-C reaches only this process,
which then stops them in order: the services first (SIGTERM, so they finish in-flight
work while Redis is still up), Redis last; whatever outlives the timeout gets SIGKILL.
Every child is signalled by its pid.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from rich.console import Console
from rich.text import Text

from askdoc_cli import launcher
from askdoc_cli.launcher import (
    SERVICES,
    Child,
    LaunchError,
    RedisProcess,
    ServiceProcess,
    listening,
)
from shared.redis import safe_url

COLOURS = {
    "redis": "red",
    "questions": "cyan",
    "answers": "green",
    "votes": "magenta",
    "notify": "yellow",
    "web": "blue",
}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class DevError(LaunchError):
    """`askdoc dev` cannot go on; the message says why."""


@dataclass
class Supervisor:
    """Starts children through the launcher, prefixes their logs, and stops them all by pid."""

    console: Console
    stop_timeout: float
    children: list[Child] = field(default_factory=list)
    signals: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)
    _print_lock: threading.Lock = field(default_factory=threading.Lock)

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

    def print_line(self, name: str, line: str) -> None:
        """A child's line, prefixed by its name in its colour."""
        prefix = f"{name:<9} | "
        with self._print_lock:
            self.console.print(Text.assemble((prefix, COLOURS.get(name, "white")), line))

    # --- children ------------------------------------------------------------------

    def started(self, child: Child, url: str) -> None:
        self.children.append(child)
        self.say(
            Text.assemble(
                ("started ", "bold"),
                (f"{child.name:<9}", COLOURS.get(child.name, "white")),
                f" pid {child.pid}  {url}",
            )
        )

    def exited(self) -> Child | None:
        """A child that exited on its own, if any."""
        for child in self.children:
            if child.proc is not None and not child.running():
                return child
        return None

    def stop_all(self) -> None:
        """Services first, then Redis: SIGTERM by pid, SIGKILL after the timeout."""
        launcher.stop_all(
            self.children, self.stop_timeout, lambda: self.signals >= 2, self._stopped
        )
        self.children = []

    def _stopped(self, child: Child, killed: bool) -> None:
        if killed:
            self.say(f"{child.name} (pid {child.pid}) did not stop in time: SIGKILL")
        code = child.returncode or 0
        how = f"exit {code}" if code >= 0 else f"ended by {signal.Signals(-code).name}"
        self.say(f"stopped {child.name:<9} pid {child.pid} ({how})")


def start_redis(sup: Supervisor, url: str, data_dir: Path | None) -> None:
    """Start redis-server (AOF on) for `url` unless something already listens there."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if listening(host, port):
        sup.say(f"using the Redis already listening at {host}:{port}")
        return
    if host not in LOOPBACK:
        raise DevError(f"nothing listens at {host}:{port}, and dev starts Redis only on loopback")
    server = RedisProcess(
        port=port,
        data_dir=data_dir,
        appendonly=True,
        password=parts.password,
        output=sup.print_line,
        own_session=True,
    )
    try:
        server.start()
    finally:
        if server.proc is not None:
            sup.started(server, f"{safe_url(url)} (AOF in {server.dir})")


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
    # Each service keeps its default port's offset from questions' (8001).
    ports = {name: base_port + SERVICES[name].port - SERVICES["questions"].port for name in names}
    busy = [f"{p} ({n})" for n, p in ports.items() if listening("127.0.0.1", p)]
    if busy:
        raise DevError(f"port {', '.join(busy)} already in use; pick others with --base-port")
    code = 0
    with sup.signals_handled():
        try:
            start_redis(sup, redis_url, data_dir)
            services = launcher.start_services(
                names,
                redis_url,
                secret,
                ports,
                # Development: the web offers "sign in as" the demo users.
                # The backends trust the web (all on loopback): each visitor its own read budget.
                defaults={
                    "ASKDOC_LOG_FORMAT": "console",
                    "ASKDOC_WEB_DEV_LOGIN": "true",
                    "ASKDOC_TRUSTED_PROXIES": "127.0.0.1",
                },
                output=lambda _: sup.print_line,
                own_session=True,
            )
            for service in services.values():
                sup.started(service, service.url)
            if launcher.wait_ready(
                services.values(), ready_timeout, sup.stopping, _ready(sup), sup.children
            ):
                sup.say(Text("all services ready; Ctrl-C stops everything", style="bold green"))
            while not sup.stopping.wait(0.5):
                dead = sup.exited()
                if dead is not None:
                    sup.say(
                        Text(
                            f"{dead.name} exited with code {dead.returncode}; stopping everything",
                            style="bold red",
                        )
                    )
                    code = 1
                    break
        except LaunchError as exc:
            sup.say(Text.assemble(("error: ", "bold red"), str(exc).splitlines()[0]))
            code = 1
        finally:
            sup.say("stopping: services first, then Redis")
            redises = [c for c in sup.children if isinstance(c, RedisProcess)]
            sup.stop_all()
            for server in redises:
                server.remove_data()
    return code


def _ready(sup: Supervisor) -> Callable[[ServiceProcess], None]:
    def say_ready(service: ServiceProcess) -> None:
        sup.say(Text.assemble(("ready   ", "bold green"), f"{service.name:<9} {service.url}"))

    return say_ready
