"""The services' connection pool: idle connections handed out at once, the rest waits."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.redis import PromptConnectionPool, RedisClient, make_redis
from shared.settings import Settings
from tests.support import JWT_SECRET, RedisServer


def client(redis_url: str, connections: int, timeout_s: float) -> RedisClient:
    settings = Settings(
        redis_url=redis_url,
        jwt_secret=JWT_SECRET,  # type: ignore[arg-type]
        redis_max_connections=connections,
        redis_pool_timeout_s=timeout_s,
    )
    return make_redis(settings)


def _pool(redis: RedisClient) -> PromptConnectionPool:
    pool = redis.connection_pool
    assert isinstance(pool, PromptConnectionPool)
    return pool


async def test_idle_connections_are_reused(redis_url: str) -> None:
    redis = client(redis_url, 4, 5)
    for n in range(20):
        await redis.set("{t}:pool", n)
    pool = _pool(redis)
    assert len(pool._available_connections) + len(pool._in_use_connections) == 1
    await redis.aclose()


async def test_a_burst_beyond_the_pool_waits_and_is_served(redis_url: str) -> None:
    redis = client(redis_url, 2, 5)
    await asyncio.gather(*(redis.incr("{t}:burst") for _ in range(40)))
    assert await redis.get("{t}:burst") == "40"
    pool = _pool(redis)
    assert len(pool._available_connections) + len(pool._in_use_connections) <= 2
    assert not pool._in_use_connections
    await redis.aclose()


async def test_a_command_fails_when_no_connection_frees_in_time(redis_url: str) -> None:
    redis = client(redis_url, 1, 0.2)
    pool = _pool(redis)
    held = await pool.get_connection()
    with pytest.raises(RedisConnectionError, match="No connection available"):
        await redis.ping()
    await pool.release(held)
    assert await redis.ping()
    await redis.aclose()


async def test_a_release_wakes_a_command_waiting_for_the_connection(redis_url: str) -> None:
    redis = client(redis_url, 1, 5)
    pool = _pool(redis)
    held = await pool.get_connection()
    waiting = asyncio.create_task(redis.ping())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await pool.release(held)
    assert await asyncio.wait_for(waiting, 2)
    await redis.aclose()


async def test_connections_pooled_before_a_redis_restart_serve_after_it() -> None:
    # Its own server: this one is SIGKILLed and started again on its AOF.
    server = RedisServer(appendonly=True).start()
    try:
        redis = client(server.url, 30, 5)
        await redis.set("{t}:kept", "yes")
        # 20 reads at once open 20 connections, which go back to the pool idle.
        await asyncio.gather(*(redis.blpop(["{t}:none"], timeout=0.05) for _ in range(20)))
        assert len(_pool(redis)._available_connections) == 20
        server.kill()
        await asyncio.sleep(0.5)  # the pooled connections see the server close them
        await asyncio.to_thread(server.start)
        # Each read takes a different pooled connection: none may be the dead one.
        replies = await asyncio.gather(
            *(redis.get("{t}:kept") for _ in range(20)), return_exceptions=True
        )
        assert replies == ["yes"] * 20, [r for r in replies if r != "yes"][:3]
        await redis.aclose()
    finally:
        server.cleanup()
