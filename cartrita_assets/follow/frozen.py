"""v1 as a follow-mode cutover froze it: what a rollback after that cutover returns v1 to.

The backup is taken at the replication slot's snapshot, and v1 then takes writes until the
freeze, so after a follow-mode cutover v1 no longer equals its backup: it equals its state at the
freeze, which the cutover measures anyway (every table's rows and content hash, and every Redis
key) to verify v2's switch point. That measurement is kept here, in the follow state folder
(0600 files in a 0700 folder): ``frozen_v1.json`` and the Redis keys in the backup file format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cartrita_assets.pg.inventory import HASH_METHOD, TableState
from cartrita_assets.redaction import private_dir, write_private_file

FROZEN_NAME = "frozen_v1.json"
FROZEN_REDIS_NAME = "frozen_v1_redis.jsonl"


@dataclass(frozen=True)
class FrozenV1:
    """v1's state at a follow-mode cutover's freeze.

    Attributes:
        backup_id: the backup taken in the follow run's slot snapshot.
        database: v1's database.
        freeze_lsn: v1's WAL position when it refused writes.
        frozen_at: when (ISO 8601, UTC).
        tables: every v1 table's rows and content hash, read after the freeze.
        redis: whether v1's Redis keys were recorded (``frozen_v1_redis.jsonl``).
        hash_method: how ``tables`` were hashed (:data:`inventory.HASH_METHODS`).
    """

    backup_id: str
    database: str
    freeze_lsn: str
    frozen_at: str
    tables: dict[str, TableState]
    redis: bool
    hash_method: str = HASH_METHOD


def redis_path(root: Path) -> Path:
    """Where the frozen v1 Redis keys are kept (the backup file format)."""
    return root / FROZEN_REDIS_NAME


def save(root: Path, frozen: FrozenV1) -> None:
    """Record ``frozen`` (0600, in a 0700 folder). Names, counts and hashes only: no value."""
    private_dir(root)
    body = {
        **{k: getattr(frozen, k) for k in ("backup_id", "database", "freeze_lsn", "frozen_at")},
        "redis": frozen.redis,
        "hash_method": frozen.hash_method,
        "tables": {n: [t.rows, t.content_hash] for n, t in sorted(frozen.tables.items())},
    }
    write_private_file(root / FROZEN_NAME, json.dumps(body, indent=2) + "\n")


def load(root: Path) -> FrozenV1 | None:
    """The recorded frozen v1, or None when no follow-mode cutover recorded one."""
    path = root / FROZEN_NAME
    if not path.exists():
        return None
    body = json.loads(path.read_text())
    tables = {
        n: TableState(rows=int(r), content_hash=str(h)) for n, (r, h) in body["tables"].items()
    }
    return FrozenV1(
        backup_id=str(body["backup_id"]), database=str(body["database"]),
        freeze_lsn=str(body["freeze_lsn"]), frozen_at=str(body["frozen_at"]),
        tables=tables, redis=bool(body["redis"]), hash_method=str(body["hash_method"]),
    )  # fmt: skip


def forget(root: Path) -> None:
    """Remove the record (v1 was restored from its backup, or a new follow run began)."""
    (root / FROZEN_NAME).unlink(missing_ok=True)
    redis_path(root).unlink(missing_ok=True)
