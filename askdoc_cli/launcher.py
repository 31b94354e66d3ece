"""One launcher for dev, demo, tests and bench: redis-server and the services as children.

Every child is signalled by its own pid, never by name. A group stops services first
(SIGTERM, so they finish in-flight work while Redis is still up) and Redis last;
whatever outlives the timeout gets SIGKILL. A child's output goes to a log file, to a
line sink (dev's prefixed terminal), or nowhere; the last lines are kept for errors.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServiceSpec:
    """A service the launcher can start: its default port and the peers it must know."""

    name: str
    port: int
    # Environment variable -> the service whose base URL it carries (e.g. web's backends).
    peers: Mapping[str, str] = field(default_factory=dict)

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", f"services.{self.name}"]


# Add a service here and dev, demo, tests and bench start it with the others. The web
# starts last: it learns the other four's URLs from the same run.
SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("questions", 8001),
        ServiceSpec("answers", 8002),
        ServiceSpec("votes", 8003),
        ServiceSpec("notify", 8004),
        ServiceSpec(
            "web",
            8000,
            peers={
                "ASKDOC_QUESTIONS_URL": "questions",
                "ASKDOC_ANSWERS_URL": "answers",
                "ASKDOC_VOTES_URL": "votes",
                "ASKDOC_NOTIFY_URL": "notify",
            },
        ),
    )
}

LineSink = Callable[[str, str], None]
# Where a child's output goes: a log file, a sink called with (name, line), or nowhere.
Output = Path | LineSink | None


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the launcher dies, even by SIGKILL.

    Without it a killed `askdoc dev` or test run leaves Redis and services running.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _from_main_thread_on_linux() -> bool:
    # The death signal follows the spawning *thread*: a child started from a worker
    # thread (a test restarting a service off the event loop) would die with that thread.
    return sys.platform == "linux" and threading.current_thread() is threading.main_thread()


class LaunchError(RuntimeError):
    """A child could not be started or did not become ready; the message says why."""


#: "LOW-HIGH": free_port picks from these ports instead of asking the system. Parallel test
#: workers each get a range of their own: a port one of them was given stays unbound while
#: its service imports, and the system may hand the same port to another worker meanwhile.
FREE_PORTS_VAR = "ASKDOC_FREE_PORTS"
_handed_out: deque[int] = deque(maxlen=512)


def free_port_range() -> range | None:
    """The ports ASKDOC_FREE_PORTS allows (None: any the system picks)."""
    value = os.environ.get(FREE_PORTS_VAR, "")
    if not value:
        return None
    low, _, high = value.partition("-")
    try:
        ports = range(int(low), int(high) + 1)
    except ValueError:
        raise LaunchError(f"{FREE_PORTS_VAR} must be LOW-HIGH, not {value!r}") from None
    if not ports or ports[0] < 1024 or ports[-1] > 65535:
        raise LaunchError(f"{FREE_PORTS_VAR} must lie within 1024-65535, not {value!r}")
    return ports


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(preferred: int = 0) -> int:
    """`preferred` if it is free on loopback, else a port free right now (from
    ASKDOC_FREE_PORTS if set, never one this process handed out lately)."""
    if preferred and _bindable(preferred):
        return preferred
    allowed = free_port_range()
    if allowed is None:
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind((HOST, 0))
            return int(s.getsockname()[1])
        raise LaunchError("no free port on loopback")
    for _ in range(200):
        port = random.choice(allowed)
        if port not in _handed_out and _bindable(port):
            _handed_out.append(port)
            return port
    raise LaunchError(f"no free port on loopback in {FREE_PORTS_VAR}")


def listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class Child:
    """One child process, started with its environment and signalled by its pid."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str] | None = None,
        output: Output = None,
        own_session: bool = False,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env) if env is not None else dict(os.environ)
        self.output = output
        # A child in its own session does not get the terminal's Ctrl-C, so the
        # parent alone decides the order of the stop.
        self.own_session = own_session
        self.proc: subprocess.Popen[bytes] | None = None
        self.tail: deque[str] = deque(maxlen=200)
        self._pump: threading.Thread | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def spawn(self) -> None:
        """Start the process; output as `self.output` says."""
        sink = self.output if callable(self.output) else None
        stdout: int | IO[bytes] = subprocess.DEVNULL
        if isinstance(self.output, Path):
            self._log = self.output.open("ab")
            stdout = self._log
        elif sink is not None:
            stdout = subprocess.PIPE
        # argv comes from sys.executable / redis-server and fixed module names.
        self.proc = subprocess.Popen(  # noqa: S603
            self.argv,
            cwd=ROOT if (ROOT / "services").is_dir() else None,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=self.own_session,
            preexec_fn=_die_with_parent if _from_main_thread_on_linux() else None,
        )
        if sink is not None:
            assert self.proc.stdout is not None
            self._pump = threading.Thread(
                target=self._read, args=(self.proc.stdout, sink), daemon=True
            )
            self._pump.start()

    def _read(self, stream: IO[bytes], sink: LineSink) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            self.tail.append(line)
            sink(self.name, line)
        stream.close()

    def logs(self) -> str:
        """What the child wrote: its log file, or the last lines seen."""
        if isinstance(self.output, Path):
            return self.output.read_text(errors="replace")
        return "\n".join(self.tail)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to this child's pid if it still runs."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def pause(self) -> None:
        """SIGSTOP: the process holds its sockets open but answers nothing."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no chance to finish or ack anything."""
        if self.running():
            self.signal(signal.SIGKILL)
            assert self.proc is not None
            self.proc.wait(10)
        self._close()

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then SIGKILL if still running after `timeout`; the exit code."""
        stop_all([self], timeout)
        return self.returncode or 0

    def join_output(self, timeout: float = 2) -> None:
        if self._pump is not None:
            self._pump.join(timeout)
        self._close()

    def _close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def stop_all(
    children: Iterable[Child],
    timeout: float,
    hurry: Callable[[], bool] = lambda: False,
    on_stopped: Callable[[Child, bool], None] | None = None,
) -> None:
    """Services first, then Redis: SIGTERM by pid, SIGKILL after `timeout` or on `hurry()`.

    `on_stopped(child, killed)` is told of each child once it has exited.
    """
    children = list(children)
    services = [c for c in children if not isinstance(c, RedisProcess)]
    redises = [c for c in children if isinstance(c, RedisProcess)]
    for batch in (services, redises):
        started = [c for c in batch if c.proc is not None]
        for child in started:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in started:
            assert child.proc is not None
            while child.proc.poll() is None and time.monotonic() < deadline and not hurry():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(timeout=0.1)
            killed = child.proc.poll() is None
            if killed:
                child.signal(signal.SIGKILL)
                child.proc.wait()
            child.join_output()
            if on_stopped is not None:
                on_stopped(child, killed)


# --- Redis ------------------------------------------------------------------------------


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise LaunchError(
            "redis-server is not installed: run 'make install' or apt-get install redis-server"
        )
    return binary


class RedisProcess(Child):
    """redis-server on a loopback port (free unless given), its data in a directory."""

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | None = None,
        appendonly: bool = False,
        extra: list[str] | None = None,
        password: str | None = None,
        output: Output = None,
        own_session: bool = False,
        appendfsync: str = "everysec",
    ) -> None:
        self.binary = redis_binary()
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.dir = str(data_dir) if data_dir else tempfile.mkdtemp(prefix="askdoc-redis-")
        self.appendonly = appendonly
        # everysec: a SIGKILL during a slow fsync loses up to ~2 s of acknowledged writes
        # (Redis postpones the AOF write and replies anyway); "always" loses none.
        self.appendfsync = appendfsync
        self.extra = list(extra or [])
        self.password = password
        super().__init__("redis", [], dict(os.environ), output, own_session)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{HOST}:{self.port}/0"

    def _argv(self) -> list[str]:
        argv = [self.binary]
        if self.password:
            # A 0600 config file keeps the password out of `ps`.
            conf = Path(self.dir) / "askdoc-redis.conf"
            conf.touch(mode=0o600)
            conf.write_text(f"requirepass {self.password}\n")
            argv.append(str(conf))
        return [
            *argv,
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--dir",
            self.dir,
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
            *self.extra,
        ]

    def start(self, timeout: float = 10) -> Self:
        """Start and wait until it answers (an AOF still loading answers LOADING)."""
        Path(self.dir).mkdir(parents=True, exist_ok=True)
        self.argv = self._argv()
        self.spawn()
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.running():
                    raise LaunchError(f"redis-server exited with code {self.returncode}")
                try:
                    if client.ping():
                        client.dbsize()
                        return self
                except redis.exceptions.RedisError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.terminate(5)  # a caller whose start failed has nothing to stop
        raise LaunchError(f"redis-server did not answer on port {self.port} in {timeout:.0f} s")

    def client(self, **kwargs: Any) -> redis.Redis:
        """A decoded-string client (sync) for this server."""
        return redis.Redis(port=self.port, password=self.password, decode_responses=True, **kwargs)

    def stop(self) -> None:
        self.terminate(10)

    def cleanup(self) -> None:
        """Stop it and remove its data directory if the launcher made it."""
        self.stop()
        self.remove_data()

    def remove_data(self) -> None:
        """Remove the data directory if the launcher made it (the server must be stopped)."""
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- services ---------------------------------------------------------------------------


class ServiceProcess(Child):
    """One askdoc service run as `python -m services.<name>`."""

    def __init__(
        self,
        name: str,
        redis_url: str,
        secret: str,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        defaults: Mapping[str, str] | None = None,
        output: Output = None,
        own_session: bool = False,
    ) -> None:
        """`defaults` yield to the caller's environment; `env` overrides it."""
        spec = SERVICES.get(name, ServiceSpec(name, 0))
        self.port = port or free_port()
        self.redis_url = redis_url
        if output is None:
            output = Path(tempfile.mkstemp(prefix=f"askdoc-{name}-", suffix=".log")[1])
        full_env = {
            "ASKDOC_HTTP_HOST": HOST,
            **(defaults or {}),
            **os.environ,
            **(env or {}),
            "ASKDOC_REDIS_URL": redis_url,
            "ASKDOC_JWT_SECRET": secret,
            "ASKDOC_HTTP_PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
        }
        super().__init__(name, spec.argv, full_env, output, own_session)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return self.output if isinstance(self.output, Path) else None

    def start(self, wait_ready: bool = True, timeout: float = 180) -> Self:
        # Generous: notify loads its gazetteer before it is ready, slow on a busy machine.
        self.spawn()
        if wait_ready:
            try:
                self.wait_ready(timeout)
            except LaunchError:
                self.terminate(10)  # a caller whose start failed has nothing to stop
                raise
        return self

    def ready(self, http: httpx.Client | None = None) -> bool:
        """Whether /readyz answers 200 right now (through `http` if given)."""
        with contextlib.suppress(httpx.HTTPError):
            if http is None:
                return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
            return http.get(f"{self.url}/readyz").status_code == 200
        return False

    def wait_ready(self, timeout: float = 180) -> None:
        wait_ready([self], timeout)


def peer_env(name: str, urls: Mapping[str, str]) -> dict[str, str]:
    """The variables that tell `name` where its peers serve, from this run's URLs."""
    spec = SERVICES.get(name, ServiceSpec(name, 0))
    missing = [peer for peer in spec.peers.values() if peer not in urls]
    if missing:
        raise LaunchError(f"{name} needs {', '.join(missing)} started with it")
    return {var: urls[peer] for var, peer in spec.peers.items()}


def start_services(
    names: Iterable[str],
    redis_url: str,
    secret: str,
    ports: Mapping[str, int] | None = None,
    env: Mapping[str, str] | None = None,
    defaults: Mapping[str, str] | None = None,
    output: Callable[[str], Output] = lambda name: None,
    own_session: bool = False,
) -> dict[str, ServiceProcess]:
    """Start services without waiting; each learns its peers' URLs from the same run."""
    names = list(names)
    ports = {n: (ports or {}).get(n) or free_port() for n in names}
    urls = {n: f"http://{HOST}:{p}" for n, p in ports.items()}
    started: dict[str, ServiceProcess] = {}
    for name in names:
        service = ServiceProcess(
            name,
            redis_url,
            secret,
            ports[name],
            {**(env or {}), **peer_env(name, urls)},
            defaults,
            output(name),
            own_session,
        )
        service.spawn()
        started[name] = service
    return started


def wait_ready(
    services: Iterable[ServiceProcess],
    timeout: float,
    stop: threading.Event | None = None,
    on_ready: Callable[[ServiceProcess], None] | None = None,
    watch: Iterable[Child] = (),
) -> bool:
    """Poll each service's /readyz until all answer 200; False if `stop` was set.

    A service, or any child in `watch`, that exits meanwhile is a LaunchError.
    """
    # One client for all the polls: each httpx.get builds a TLS context first (~30 ms of
    # CPU), taken from the services starting beside it ten times a second.
    with httpx.Client(timeout=1) as http:
        return _poll_ready(services, timeout, http, stop, on_ready, watch)


def _poll_ready(
    services: Iterable[ServiceProcess],
    timeout: float,
    http: httpx.Client,
    stop: threading.Event | None,
    on_ready: Callable[[ServiceProcess], None] | None,
    watch: Iterable[Child],
) -> bool:
    waiting = {s.name: s for s in services}
    watched = [*waiting.values(), *watch]
    deadline = time.monotonic() + timeout
    while waiting:
        if stop is not None and stop.is_set():
            return False
        for child in watched:
            if child.proc is not None and not child.running():
                raise LaunchError(
                    f"{child.name} exited with code {child.returncode} before it was ready:\n"
                    + child.logs()[-3000:]
                )
        for name, service in list(waiting.items()):
            if service.ready(http):
                del waiting[name]
                if on_ready is not None:
                    on_ready(service)
        if not waiting:
            break
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {s.name}\n{s.logs()[-3000:]}" for s in waiting.values())
            raise LaunchError(f"not ready in {timeout:.0f} s: {', '.join(waiting)}\n{logs}")
        if stop is not None:
            stop.wait(0.1)
        else:
            time.sleep(0.1)
    return True
