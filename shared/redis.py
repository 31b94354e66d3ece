"""Redis clients built from settings (standalone or cluster); nothing connects at import."""

from __future__ import annotations

from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
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
    # redis-py's default pool fails a command at once (MaxConnectionsError, a 503) when
    # all its connections are busy: a burst of more concurrent requests than the pool got
    # 503s that Redis would have served a moment later. This one makes the command wait
    # for a connection, up to a timeout, and only then fails it (still a 503).
    pool_options = {
        "max_connections": settings.redis_max_connections,
        "timeout": settings.redis_pool_timeout_s,
        **options,
    }
    return Redis.from_pool(BlockingConnectionPool.from_url(settings.redis_url, **pool_options))


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
