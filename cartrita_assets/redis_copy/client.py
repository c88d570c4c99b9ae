"""Clients of a live server: `client_for`, the `Connect` callable, the checks, version, clock."""

from __future__ import annotations

from collections.abc import Callable

import redis

from cartrita_assets.envfile import RedisSettings
from cartrita_assets.errors import PreflightError

Connect = Callable[[int], redis.Redis]


def client_for(settings: RedisSettings) -> redis.Redis:
    """A redis-py client for ``settings`` (credentials passed as arguments, never in a URL)."""
    return redis.Redis(
        host=settings.host,
        port=settings.port,
        db=settings.db,
        username=settings.username,
        password=settings.password,
        ssl=settings.tls,
        socket_timeout=30,
        socket_connect_timeout=5,
    )


def _check_client(client: redis.Redis) -> None:
    if client.connection_pool.connection_kwargs.get("decode_responses"):
        raise PreflightError(
            "redis_copy needs clients made with decode_responses=False: keys and values are "
            "binary and decoding would corrupt or reject them."
        )


def _server_major(client: redis.Redis) -> int:
    version = str(client.info("server").get("redis_version", "0"))
    return int(version.split(".")[0] or 0)


def _server_time_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000
