"""Which Redis-compatible server a side runs, and whether v2 is at least as new as v1.

Valkey reports ``redis_version:7.2.4`` for client compatibility whatever its own version, so a
server is compared by the Redis data model it implements: Redis by its version, Valkey 7 and 8
as Redis 7.2, Valkey 9 as Redis 7.4 (9.0 added hash-field expiry, Redis 7.4's addition).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from cartrita_assets.errors import PreflightError


@dataclass(frozen=True)
class ServerVersion:
    """A server's product (``Redis`` or ``valkey``) and version, e.g. ``valkey 9.1.2``."""

    product: str
    version: str

    def __str__(self) -> str:
        return f"{self.product} {self.version}"

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> ServerVersion:
        """From ``INFO server``."""
        if info.get("valkey_version"):
            return cls("valkey", str(info["valkey_version"]))
        return cls("Redis", str(info.get("redis_version", "0")))

    @classmethod
    def parse(cls, text: str) -> ServerVersion:
        """From ``str(version)``; a bare number (manifests of format 1) is Redis."""
        product, _, version = text.strip().rpartition(" ")
        return cls(product or "Redis", version)

    def numbers(self) -> tuple[int, ...]:
        """The version as integers (``7.0.15`` -> ``(7, 0, 15)``)."""
        return tuple(int(p) for p in self.version.split(".") if p.isdigit())

    def data_model(self) -> tuple[int, ...]:
        """The Redis version whose data model this server implements."""
        if self.product != "valkey":
            return self.numbers()
        return (7, 4, 0) if self.numbers() >= (9,) else (7, 2, 4)


def server_version(client: redis.Redis) -> ServerVersion:
    """What a live server runs."""
    return ServerVersion.from_info(client.info("server"))


def check_not_older(v1: ServerVersion, v2: ServerVersion) -> None:
    """Refuse a v2 whose data model is older than v1's.

    Raises:
        PreflightError: naming both versions and the fix.
    """
    if v2.data_model() >= v1.data_model():
        return
    raise PreflightError(
        f"v2 Redis runs {v2}, older than v1's {v1}: an older server cannot hold everything a "
        "newer one stores (stream counters, consumer-group state, newer types), and Redis does "
        f"not load a newer server's data. {_fix(v1)}"
    )


def _fix(v1: ServerVersion) -> str:
    model = ".".join(map(str, v1.data_model()[:2]))
    if v1.data_model() <= (7, 4, 0):
        return (
            f"Run v2 on Redis >= {model} or valkey >= 9: locally, unset "
            "CARTRITA_V2_REDIS_SERVER to use the bundled valkey-server; on Kubernetes the Redis "
            "image tag follows v1's version."
        )
    return (
        f"Run v2 on Redis >= {model}: locally, set CARTRITA_V2_REDIS_SERVER to such a "
        "redis-server binary; on Kubernetes the Redis image tag follows v1's version."
    )
