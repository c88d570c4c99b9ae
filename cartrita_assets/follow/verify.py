"""After the switch: v2's switch-point snapshot against frozen v1, table by table, key by key."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import psycopg

from cartrita_assets import redis_copy
from cartrita_assets.envfile import PostgresSettings, RedisSettings
from cartrita_assets.pg import inventory
from cartrita_assets.pg.connect import connect
from cartrita_assets.redis_copy.client import client_for


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


def _frozen_v1(v1_pg: PostgresSettings) -> dict[str, inventory.TableState]:
    with connect(v1_pg, role="v1 PostgreSQL", read_only=True) as conn:
        return inventory.table_states(conn)


def verify_switch_point(
    v1_pg: PostgresSettings,
    v2_snapshot: psycopg.Connection,
    v1_redis: RedisSettings | None,
    v2_redis: RedisSettings | None,
) -> SwitchPointDiff:
    """Compare frozen v1 (read only) with v2's session holding the switch-point snapshot."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        # both sides hashed at once: v1 in a thread, v2 in its switch-point session here
        v1_side = pool.submit(_frozen_v1, v1_pg)
        with connect(v1_pg, role="v1 PostgreSQL", read_only=True) as conn:
            names = {inventory.qualified(s, t) for s, t in inventory.list_tables(conn)}
        inventory.canonical_session(v2_snapshot)
        at_switch = {
            inventory.qualified(schema, table): inventory.table_state(v2_snapshot, schema, table)
            for schema, table in inventory.list_tables(v2_snapshot)
            if inventory.qualified(schema, table) in names  # v2's own tables are not v1's
        }
        frozen = v1_side.result()
    diff = SwitchPointDiff(
        tables_compared=len(frozen),
        rows_v1=sum(t.rows for t in frozen.values()),
        tables_different=compare_tables(frozen, at_switch),
    )
    if v1_redis is not None and v2_redis is not None:
        keys = redis_copy.compare_keyspace(
            lambda db: client_for(replace(v2_redis, db=db)),
            redis_copy.read_keyspace(lambda db: client_for(replace(v1_redis, db=db))),
        )
        diff.redis_keys_compared = keys.compared
        diff.redis_summary = keys.describe()
        diff.redis_different = not keys.ok() or keys.extra_count > 0
    return diff
