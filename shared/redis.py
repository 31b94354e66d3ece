"""Redis clients built from settings (standalone or cluster); nothing connects at import."""

from __future__ import annotations

from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.event import AsyncAfterConnectionReleasedEvent

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
    return Redis.from_pool(PromptConnectionPool.from_url(settings.redis_url, **pool_options))


def _pool_metrics_on() -> bool:
    """Whether redis-py records its own (OpenTelemetry) pool metrics; askdoc does not."""
    try:
        from redis.asyncio.observability import recorder
    except ImportError:  # a redis-py without them
        return False
    return recorder._get_or_create_collector() is not None


class PromptConnectionPool(BlockingConnectionPool):
    """A BlockingConnectionPool that hands out an idle connection at once.

    The stock pool takes its condition's lock, arms a timeout, waits on a predicate and
    records its metrics around every command, even with connections idle: a twelfth of
    the questions service's CPU on POST /questions, more than its one EVALSHA's packing
    and parsing. With a connection idle and nobody waiting, this pool takes it, and gives
    it back, directly (with the same connection check, and the same release event);
    otherwise it does exactly what the stock pool does: waits for a connection up to its
    `timeout`, then fails the command. So does it in redis-py's maintenance mode, and
    everywhere when redis-py records its pool metrics.
    """

    #: The stock pool's state this one reads (redis-py 8); without it, it is the stock pool.
    _STATE = ("_available_connections", "_in_use_connections", "_condition", "_event_dispatcher")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        known = all(hasattr(self, name) for name in self._STATE)
        self._prompt = known and not _pool_metrics_on()

    def _waited_for(self) -> bool:
        return bool(self._condition._waiters)  # type: ignore[attr-defined]

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if (
            args
            or kwargs
            or not self._prompt
            or getattr(self, "_in_maintenance", False)
            or not self._available_connections
            or self._waited_for()
        ):
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        connection = self._available_connections.pop()
        self._in_use_connections.add(connection)
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: Any) -> None:
        if not self._prompt or getattr(self, "_in_maintenance", False) or self._waited_for():
            await super().release(connection)
            return
        self._in_use_connections.remove(connection)
        if connection.should_reconnect():
            await connection.disconnect()
        self._available_connections.append(connection)
        released = AsyncAfterConnectionReleasedEvent(connection)  # type: ignore[no-untyped-call]
        if self._event_dispatcher is not None:
            await self._event_dispatcher.dispatch_async(released)
        if self._waited_for():  # someone began waiting meanwhile: wake them as the stock pool
            async with self._condition:
                self._condition.notify()


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
        **_no_maint_notifications(),
    }


def _no_maint_notifications() -> dict[str, Any]:
    """Maintenance notifications off, so a pool replaces the connections Redis closed.

    redis-py 8.1.0 pools skip their check of a connection taken from the pool (closed by
    the server, or holding unread data) whenever maintenance notifications are enabled,
    and its default for RESP3 is "auto", which counts as enabled even on a Redis that
    refuses them (redis/redis-py#4252, fixed after 8.1.0 by #4260). So after a Redis
    restart every pooled connection from before it failed its next command ("Connection
    closed by server"): all 50 of 50 concurrent reads, measured with
    scripts/pool_after_restart.py. Those notifications are Redis Enterprise's (relaxed
    timeouts while it migrates a node); askdoc runs open-source Redis, which has none.
    """
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # a redis-py without them: its pools check every connection
        return {}
    if not hasattr(ConnectionPool, "maint_notifications_enabled"):
        return {}  # its asyncio pools know nothing of them (and take no such option)
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def safe_url(url: str) -> str:
    """The Redis URL without its password, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
