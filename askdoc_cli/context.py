"""What every command shares: settings from the environment, output, errors and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import Field, SecretStr, ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shared import streams
from shared.redis import RedisClient, make_redis, safe_url
from shared.settings import Settings

T = TypeVar("T")

MIN_SECRET_CHARS = 32


class CliSettings(Settings):
    """The services' settings, with the JWT secret optional: only some commands need it."""

    jwt_secret: SecretStr | None = Field(  # type: ignore[assignment]
        None, description="HS256 secret; needed by `askdoc token` and `askdoc doctors import`"
    )


def load_settings(redis_url: str | None = None) -> CliSettings:
    """Settings from ASKDOC_* variables; `redis_url` (a command-line option) wins."""
    overrides: dict[str, Any] = {"redis_url": redis_url} if redis_url else {}
    try:
        return CliSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"ASKDOC_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        fail(f"bad settings: {problems}")


def jwt_secret(settings: CliSettings) -> str:
    """The signing secret, or a one-line refusal when it is missing or too short."""
    if settings.jwt_secret is None or not settings.jwt_secret.get_secret_value():
        fail(
            "ASKDOC_JWT_SECRET is not set: export the secret the services use "
            f"(at least {MIN_SECRET_CHARS} characters)"
        )
    secret = settings.jwt_secret.get_secret_value()
    if len(secret) < MIN_SECRET_CHARS:
        fail(
            f"ASKDOC_JWT_SECRET is {len(secret)} characters; the services need at least "
            f"{MIN_SECRET_CHARS}"
        )
    return secret


def out() -> Console:
    """Standard output; styled on a terminal, plain when piped."""
    return Console(highlight=False, soft_wrap=True)


def err() -> Console:
    """Standard error, for progress and messages (never the data a script reads)."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def is_tty() -> bool:
    """Whether standard output is a terminal (else output is plain, for scripts)."""
    return out().is_terminal


def fail(message: str, code: int = 1) -> NoReturn:
    """Report a failure in one line on stderr and exit with `code`."""
    console = err()
    console.print(Text.assemble(("error: ", "bold red"), message))
    raise typer.Exit(code)


def usage_error(message: str, param: str | None = None) -> NoReturn:
    """A usage error: Click prints it with the usage line and exits 2."""
    raise typer.BadParameter(message, param_hint=param)


def stream_name(name: str) -> str:
    """The full stream name for `question-posted` or `askdoc.question-posted`."""
    full = name if name.startswith("askdoc.") else f"askdoc.{name}"
    if full not in streams.ALL:
        known = ", ".join(s.removeprefix("askdoc.") for s in streams.ALL)
        usage_error(f"unknown stream {name!r}; known streams: {known}", "STREAM")
    return full


def run_redis(settings: CliSettings, work: Callable[[RedisClient], Awaitable[T]]) -> T:
    """Run `work` with a Redis client, turning connection problems into a one-line failure."""

    async def main() -> T:
        client = make_redis(settings)
        try:
            return await work(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(main())
    except BrokenPipeError:
        raise  # our reader went away; not a Redis problem
    except (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError) as exc:
        fail(f"cannot reach Redis at {safe_url(settings.redis_url)}: {exc}")
    except RedisError as exc:
        fail(f"Redis error: {exc}")


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    styles: Sequence[str | None] | None = None,
) -> None:
    """A Rich table on a terminal; tab-separated lines with a header row when piped."""
    console = out()
    if not console.is_terminal:
        print("\t".join(columns))
        for row in rows:
            print("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row))
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for i, row in enumerate(rows):
        table.add_row(*(Text(cell) for cell in row), style=styles[i] if styles else None)
    console.print(table)


def human_ms(ms: int) -> str:
    """A duration for people: 950ms, 12s, 3m04s, 2h05m, 3d04h."""
    if ms < 1000:
        return f"{ms}ms"
    s = ms // 1000
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
