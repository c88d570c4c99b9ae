"""The demo Redis: the keys ``seed_redis`` writes (pure ``redis_keys``) and writing them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from cartrita_assets.demo.gen import _Gen
from cartrita_assets.demo.redis_streams import apply_stream, stream_commands
from cartrita_assets.demo.vocab import MODELS, NAMES, TAGS


@dataclass(frozen=True)
class RedisKey:
    """One Redis key to create: ``kind`` is string/hash/list/set/zset, or stream (``value``:
    the commands that build it); ``ttl_ms`` or None."""

    db: int
    key: str
    kind: str
    value: Any
    ttl_ms: int | None = None


def _ttl(g: _Gen, p: float) -> int | None:
    """With probability ``p``, a TTL between 1 hour and 7 days, in milliseconds."""
    return g.rng.randint(3_600_000, 7 * 86_400_000) if g.chance(p) else None


def _session_key(g: _Gen, i: int) -> RedisKey:
    name, local = NAMES[i % len(NAMES)]
    fields = {
        "user_id": str(i + 1),
        "email": f"{local}{i}@example.com",
        "name": name,
        "created_at": g.ts().isoformat(),
        "ip": f"203.0.113.{g.rng.randint(1, 254)}",
        "user_agent": g.pick(("Mozilla/5.0 (X11; Linux x86_64)", "CartritaMobile/1.4 (iOS 17)")),
        "locale": g.pick(("en-US", "es-ES", "ja-JP", "ar-EG", "he-IL")),
        "csrf": "",
    }
    return RedisKey(0, f"session:{g.uuid4()}", "hash", fields, _ttl(g, 0.5))


def _db0_scaled(g: _Gen, scale: int) -> Iterator[RedisKey]:
    for i in range(15 * scale):
        yield _session_key(g, i)
    for i in range(15 * scale):
        doc = json.dumps({"reply": g.paragraph(1, 2), "model": g.pick(MODELS)}, ensure_ascii=False)
        yield RedisKey(0, f"cache:conversation:{i + 1}", "string", doc, _ttl(g, 0.3))
    for i in range(3 * scale):
        jobs = [json.dumps({"job": j, "text": g.sentence()}) for j in range(g.rng.randint(1, 8))]
        yield RedisKey(0, f"queue:{g.pick(('embeddings', 'email', 'tools'))}:{i}", "list", jobs)
    for i in range(5 * scale):
        yield RedisKey(0, f"user:{i + 1}:tags", "set", g.rng.sample(TAGS, g.rng.randint(1, 5)))
    for i in range(2 * scale):
        scores = {f"user:{u}": round(g.rng.uniform(-50, 500), 3) for u in range(1, 11)}
        yield RedisKey(0, f"leaderboard:weekly:{i + 1}", "zset", scores, _ttl(g, 0.5))


def _db0_fixed(g: _Gen, scale: int) -> Iterator[RedisKey]:
    online = [str(u) for u in sorted(g.rng.sample(range(1, 20 * scale + 1), 10 * scale))]
    yield RedisKey(0, "online_users", "set", online)
    board = {f"user:{u}": round(g.rng.uniform(-100, 1000), 2) for u in range(1, 20 * scale + 1)}
    board.update({"user:neg": -12.75, "user:zero": 0.0, "user:tiny": 0.001, "用户:🚀": 3.5})
    yield RedisKey(0, "leaderboard", "zset", board)
    yield RedisKey(0, "blob:avatar:thumb", "string", b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x80\xc3(")
    yield RedisKey(0, "empty:string", "string", "")
    yield RedisKey(0, "counter:messages", "string", str(1000 * scale + g.rng.randrange(1000)))
    yield RedisKey(0, "usuario:josé:preferencias", "hash", {"tema": "oscuro", "idioma": "es"})
    yield RedisKey(0, "用户:设置", "string", "语言=中文", _ttl(g, 1.0))
    yield RedisKey(0, "🚀:launch:flags", "set", ["beta", "rtl", "ünïcode"])
    yield RedisKey(0, "מפתח:עברית", "list", ["א", "ב", "ג", "𝄞"])


def _db1_keys(g: _Gen, scale: int) -> Iterator[RedisKey]:
    for i in range(10 * scale):
        ip = f"198.51.100.{i % 254 + 1}:{i // 254}"
        yield RedisKey(1, f"ratelimit:{ip}", "string", str(g.rng.randint(1, 120)), _ttl(g, 0.8))
    for i in range(10 * scale):
        job = {"name": "embed", "data": json.dumps({"text": g.snippet()}), "attemptsMade": "0"}
        yield RedisKey(1, f"bull:embeddings:{i + 1}", "hash", job)
    yield RedisKey(1, "bull:embeddings:wait", "list", [str(i + 1) for i in range(10 * scale)])
    done = {str(i + 1): 1735689600000.0 + i * 1000.5 for i in range(5 * scale)}
    yield RedisKey(1, "bull:embeddings:completed", "zset", done)
    yield RedisKey(1, "feature:flags", "hash", {"voice": "on", "rtl": "on", "ñ": "sí"})


def redis_keys(scale: int = 1, seed: int = 42) -> list[RedisKey]:
    """Every key ``seed_redis`` writes, in write order (pure: no server needed)."""
    g = _Gen(seed, "redis")
    keys = [*_db0_scaled(g, scale), *_db0_fixed(g, scale), *_db1_keys(g, scale)]
    streams = [RedisKey(db, key, "stream", cmds) for db, key, cmds in stream_commands(g, scale)]
    return keys + streams


def _client_for_db(client: redis.Redis, db: int) -> redis.Redis:
    """A client on the same server as ``client`` but database ``db`` (own pool)."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "db": db}
    return redis.Redis(connection_pool=redis.ConnectionPool(pool.connection_class, **kwargs))


def _write_keys(client: redis.Redis, keys: Iterable[RedisKey]) -> int:
    pipe = client.pipeline(transaction=False)
    writers: dict[str, Callable[[RedisKey], Any]] = {
        "string": lambda k: pipe.set(k.key, k.value),
        "hash": lambda k: pipe.hset(k.key, mapping=k.value),
        "list": lambda k: pipe.rpush(k.key, *k.value),
        "set": lambda k: pipe.sadd(k.key, *k.value),
        "zset": lambda k: pipe.zadd(k.key, k.value),
    }
    count = 0
    for k in keys:
        if k.kind == "stream":
            pipe.execute()  # streams run their commands in order, after the keys before them
            apply_stream(client, k.value)
            count += 1
            continue
        writers[k.kind](k)
        if k.ttl_ms is not None:
            pipe.pexpire(k.key, k.ttl_ms)
        count += 1
    pipe.execute()
    return count


def seed_redis(client: redis.Redis, scale: int = 1, seed: int = 42) -> dict[int, int]:
    """Load keys into databases 0 and 1 of the Redis ``client`` points at (``client`` is used
    for db 0; db 1 gets its own connection). Target databases should be empty; returns keys
    written per db."""
    keys = redis_keys(scale, seed)
    counts = {0: _write_keys(client, (k for k in keys if k.db == 0))}
    other = _client_for_db(client, 1)
    try:
        counts[1] = _write_keys(other, (k for k in keys if k.db == 1))
    finally:
        other.connection_pool.disconnect()
    return counts
