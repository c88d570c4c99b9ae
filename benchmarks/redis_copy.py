"""Copy rate of the two Redis copy paths on the demo keyspace: v1 Redis 7 -> v2 valkey.

    python benchmarks/redis_copy.py --scale 20      # the demo at scale 20
    python benchmarks/redis_copy.py --quick         # scale 2, one round: a smoke run

Starts the machine's Redis 7 (the demo v1's server; the bundled valkey-server when there is
none) and the bundled valkey-server, seeds the source with the demo's Redis keys (streams with
groups and pending entries included), reads it into a backup file once, then restores that file
into the target by the ``dump`` path and by the ``logical`` path (timed: reading the file and
writing v2), each verified afterwards (not timed).
Prints keys/s and MB/s of each step; MB are the keys' DUMP payload bytes, the same amount for
every step, so the rates compare.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from cartrita_assets import redis_copy
from cartrita_assets.demo.redis_seed import seed_redis
from cartrita_assets.local.redis import LocalRedis
from cartrita_assets.local.redis_servers import bundled_server, system_redis7
from cartrita_assets.local.system import free_port
from cartrita_assets.redis_copy.client import client_for


def _connect(server: LocalRedis) -> redis_copy.Connect:
    settings = server.settings()
    return lambda db: client_for(replace(settings, db=db))


def _rate(label: str, seconds: float, keys: int, size: int) -> None:
    print(f"{label:<22} {seconds:7.3f} s  {keys / seconds:9.0f} keys/s  "
          f"{size / seconds / 1e6:7.2f} MB/s")  # fmt: skip


def _timed(action: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def run(scale: int, rounds: int, work: Path) -> None:
    """Seed, back up, and restore by both paths; print the rates."""
    source = LocalRedis(work / "v1", free_port(), server=system_redis7() or bundled_server())
    target = LocalRedis(work / "v2", free_port())
    try:
        source.ensure_running()
        target.ensure_running()
        source.client().flushall()
        seed_redis(source.client(), scale)
        backup = work / "redis.jsonl"
        read = lambda: redis_copy.write_backup(  # noqa: E731
            backup, redis_copy.read_keyspace(_connect(source), with_dump=True)
        )
        seconds = _timed(read, rounds)
        records = list(redis_copy.read_backup(backup))
        size = sum(len(r.dump or b"") for r in records)
        print(f"v1 {redis_copy.server_version(source.client())} -> "
              f"v2 {redis_copy.server_version(target.client())}, scale {scale}: "
              f"{len(records)} keys, {size / 1e6:.2f} MB of DUMP payloads")  # fmt: skip
        _rate("backup (read v1)", seconds, len(records), size)
        for path in ("dump", "logical"):
            restore = lambda p=path: _restore(target, backup, p)  # noqa: E731
            _rate(f"restore, {path} path", _timed(restore, rounds), len(records), size)
            _verify(target, backup)
    finally:
        source.stop()
        target.stop()


def _restore(target: LocalRedis, backup: Path, path: str) -> None:
    target.client().flushall()
    summary = redis_copy.restore_keyspace(
        _connect(target), redis_copy.read_backup(backup), path=path
    )
    assert set(summary.paths.values()) == {path}, summary.paths


def _verify(target: LocalRedis, backup: Path) -> None:
    """Not timed: every key equal, stream groups and pending entries included."""
    diff = redis_copy.compare_keyspace(_connect(target), redis_copy.read_backup(backup))
    assert diff.ok(), diff.describe()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="best of N")
    parser.add_argument("--quick", action="store_true", help="scale 2, one round")
    args = parser.parse_args()
    scale, rounds = (2, 1) if args.quick else (args.scale, args.rounds)
    work = Path(tempfile.mkdtemp(prefix="redis-copy-bench-"))
    try:
        run(scale, rounds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
