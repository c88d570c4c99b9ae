"""After the switch: v2's switch-point snapshot against frozen v1, table by table, key by key."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from cartrita_assets import redis_copy
from cartrita_assets.envfile import PostgresSettings, RedisSettings
from cartrita_assets.pg import inventory, measure
from cartrita_assets.pg.connect import connect
from cartrita_assets.redis_copy.client import client_for

Log = Callable[[str], None]


@dataclass
class SwitchPointDiff:
    """Differences between frozen v1 and v2 at the switch point (empty lists: equal)."""

    tables_compared: int = 0
    rows_v1: int = 0
    tables_different: list[str] = field(default_factory=list)
    redis_keys_compared: int = 0
    redis_summary: str = "v1 has no Redis"
    redis_different: bool = False

    def ok(self) -> bool:
        return not self.tables_different and not self.redis_different


def compare_tables(
    v1: dict[str, inventory.TableState], v2: dict[str, inventory.TableState]
) -> list[str]:
    """Every v1 table whose count or content hash differs in v2 (or is missing), with both
    counts. Pure."""
    out = []
    for name, want in sorted(v1.items()):
        got = v2.get(name)
        if got is None:
            out.append(f"{name}: missing in v2")
        elif got != want:
            out.append(f"{name}: v1 {want.rows} rows, v2 {got.rows} rows"
                       + ("" if got.rows != want.rows else ", content differs"))  # fmt: skip
    return out


def verify_switch_point(
    v1_pg: PostgresSettings,
    v2_pg: PostgresSettings,
    snapshot: str,
    v1_redis: RedisSettings | None,
    v2_redis: RedisSettings | None,
    frozen_redis: Path,
    *,
    log: Log = lambda _m: None,
) -> tuple[SwitchPointDiff, dict[str, inventory.TableState]]:
    """Compare frozen v1 (read only) with v2's switch-point ``snapshot`` (exported by a v2
    session that stays open meanwhile), both sides hashed at once, one session per core each.

    v1's Redis keys are written to ``frozen_redis`` (the backup file format) and v2's compared
    with that file, so frozen v1 is read once and stays on record for a rollback.

    Returns:
        The differences, and frozen v1's tables (rows and content hash).
    """
    jobs = max(1, measure.default_jobs() // 2)
    with ThreadPoolExecutor(max_workers=1) as pool:
        v1_side = pool.submit(
            measure.table_states, v1_pg, role="v1 PostgreSQL", jobs=jobs, log=log,
            label="frozen v1 hashing",
        )  # fmt: skip
        with connect(v1_pg, role="v1 PostgreSQL", read_only=True) as conn:
            names = {inventory.qualified(s, t) for s, t in inventory.list_tables(conn)}
        at_switch = measure.table_states(
            v2_pg, role="v2 PostgreSQL", snapshot=snapshot, jobs=jobs, log=log,
            label="v2 switch-point hashing", only=names,  # v2's own tables are not v1's
        )  # fmt: skip
        frozen = v1_side.result()
    diff = SwitchPointDiff(
        tables_compared=len(frozen),
        rows_v1=sum(t.rows for t in frozen.values()),
        tables_different=compare_tables(frozen, at_switch),
    )
    if v1_redis is not None and v2_redis is not None:
        client = client_for(v1_redis)
        records = redis_copy.read_keyspace(
            lambda db: client_for(replace(v1_redis, db=db)),
            redis_copy.databases_in_use(client), with_dump=True,
        )  # fmt: skip
        redis_copy.write_backup(frozen_redis, records)
        keys = redis_copy.compare_keyspace(
            lambda db: client_for(replace(v2_redis, db=db)), redis_copy.read_backup(frozen_redis)
        )
        diff.redis_keys_compared = keys.compared
        diff.redis_summary = keys.describe()
        diff.redis_different = not keys.ok() or keys.extra_count > 0
    return diff, frozen
