"""Redis clients built from settings (standalone or cluster); nothing connects at import."""

from __future__ import annotations

from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from shared.settings import Settings

# redis-py's reply types are unions that depend on decode_responses; stores know
# their replies are str, so the client is typed loosely rather than cast at every call.
RedisClient: TypeAlias = Any


def make_redis(settings: Settings, **kwargs: Any) -> RedisClient:
    """A decoded-string client for a service's own data."""
    options: dict[str, Any] = {
        "decode_responses": True,
        **connection_options(settings),
        **kwargs,
    }
    if settings.redis_mode == "cluster":
        return RedisCluster.from_url(settings.redis_url, **options)
    return Redis.from_url(settings.redis_url, **options)


def connection_options(settings: Settings) -> dict[str, Any]:
    """Timeouts every Redis client uses, so a half-open connection fails instead of hanging.

    A peer that vanished without a FIN (a partition, a frozen host) never answers: without
    a read timeout a blocked read waits forever. Blocking reads (XREADGROUP BLOCK) stay far
    below the timeout.
    """
    return {
        # Generous: on a starved event loop a short connect timer fires before the reply.
        "socket_connect_timeout": min(10.0, settings.redis_socket_timeout_s),
        "socket_timeout": settings.redis_socket_timeout_s,
        "socket_keepalive": True,
        "health_check_interval": settings.redis_health_check_s,
    }


def safe_url(url: str) -> str:
    """The Redis URL without its password, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
