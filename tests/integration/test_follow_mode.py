"""Follow mode on real servers: v2 follows a v1 under write load, then the cutover switches in
seconds with every acknowledged write in v2; bad setups are refused with v1 unchanged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from support.demo import running_demo
from support.proc_audit import ProcessAudit
from support.runs import (
    check_results,
    event_log_text,
    failure_messages,
    local_resources,
    materialize,
    run_job,
)

from cartrita_assets.cli.main import main as cli_main
from cartrita_assets.cluster.v2 import LocalV2Target
from cartrita_assets.demo.servers import DemoV1
from cartrita_assets.demo.writers import Writers, create_tables, missing_in_v2
from cartrita_assets.envfile import V1Settings
from cartrita_assets.local.system import free_port
from cartrita_assets.pg.connect import connect
from cartrita_assets.redis_copy.client import client_for

pytestmark = pytest.mark.integration

FOLLOW = {"ops": {"v1_backup": {"config": {"follow": True, "replica_identity_full": True}}}}
UP_TO_STREAM = ("v1_backup", "k8s_secrets", "pgvector_cluster", "restored_db", "replication_stream")


@pytest.fixture
def follow_v1(test_dir: Path) -> Iterator[DemoV1]:
    """A demo v1 of this test's own (follow mode writes to it), with the writers' tables."""
    with running_demo(test_dir / "demo-v1") as demo:
        create_tables(demo.ensure())
        yield demo


@pytest.fixture
def follow_v2(test_dir: Path) -> Iterator[LocalV2Target]:
    target = LocalV2Target(base_dir=str(test_dir / "v2"), pg_port=free_port(),
                           redis_port=free_port(), durable=False)  # fmt: skip
    try:
        yield target
    finally:
        target.stop(lambda _m: None)


@pytest.fixture
def follow_resources(
    follow_v1: DemoV1, follow_v2: LocalV2Target, test_dir: Path, base_dir: Path
) -> dict[str, Any]:
    return local_resources(follow_v1, follow_v2, test_dir, base_dir)


def v1_follow_objects(v1: V1Settings) -> dict[str, Any]:
    """What follow mode may leave on v1: slots, publications, the read-only setting, FULL ids."""
    with connect(v1.postgres, role="v1") as conn:
        return {
            "slots": conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall(),
            "publications": conn.execute("SELECT pubname FROM pg_publication").fetchall(),
            "settings": conn.execute(
                "SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d "
                "ON d.oid = s.setdatabase WHERE d.datname = current_database()"
            ).fetchall(),
            "full_identity": conn.execute(
                "SELECT relname FROM pg_class WHERE relreplident = 'f'"
            ).fetchall(),
        }


NOTHING = {"slots": [], "publications": [], "settings": [], "full_identity": []}


def follow(resources: dict[str, Any], instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    result = materialize(resources, instance, *UP_TO_STREAM, run_config=FOLLOW)
    assert result.success, failure_messages(result)
    return result


def test_writes_during_forward_and_cutover_all_reach_v2_then_rollback_keeps_them(
    follow_v1: DemoV1, follow_resources: dict[str, Any], follow_v2: LocalV2Target,
    instance: dg.DagsterInstance,
) -> None:  # fmt: skip
    v1 = follow_v1.ensure()
    with ProcessAudit(marker="cartrita") as audit, Writers(v1, 4) as writers:
        time.sleep(0.5)
        follow(follow_resources, instance)
        time.sleep(1.0)  # writes that v2 only gets through the stream
        during_follow = writers.acked.count
        result = run_job(follow_resources, instance, "cutover_job")
        cut = time.monotonic()
        time.sleep(1.0)  # the writers keep trying against frozen v1
    # v1's passwords were in no process's arguments while the whole run went on
    assert audit.seen and not [c for c in audit.seen if v1.postgres.password in c]
    assert not [c for c in audit.seen if (v1.redis.password or "@@") in c]  # type: ignore[union-attr]
    assert result.success, failure_messages(result)
    assert check_results(result)["v2_matches_frozen_v1"]
    # no write acknowledged by v1 after the switch
    assert writers.acked.last_ack < cut
    assert writers.acked.refused > 0
    assert during_follow > 100
    db = v1.postgres.dbname
    with psycopg.connect(**follow_v2.admin(db).conninfo_kwargs(), autocommit=True) as conn:
        assert missing_in_v2(writers.acked, conn) == []
        # sequences continue in v2: a new row takes an id above every one v1 gave
        top = max((int(k) for k in writers.acked.rows["follow_int"]), default=0)
        new_id = conn.execute("INSERT INTO follow_int (v) VALUES ('v2') RETURNING id").fetchone()
        assert new_id is not None and new_id[0] > top
        assert conn.execute("SELECT count(*) FROM pg_subscription").fetchone() == (0,)
    v2_redis = client_for(follow_v2.redis())
    for key, value in writers.acked.redis.items():
        assert v2_redis.get(key) == value.encode(), key
    assert v2_redis.info("replication")["role"] == "master"
    # v1 keeps refusing writes; slot, publication and replica identities are gone
    left = v1_follow_objects(v1)
    assert left["slots"] == [] and left["publications"] == [] and left["full_identity"] == []
    assert left["settings"] == [(["default_transaction_read_only=on"],)]
    with pytest.raises(Exception, match="NOREPLICAS|replica"):
        client_for(v1.redis).set("after", "cutover")  # type: ignore[arg-type]
    # v1's password is in no event of either run
    for run in instance.get_runs():
        text = event_log_text(instance, run.run_id)
        assert v1.postgres.password not in text
        assert (v1.redis.password or "@@") not in text  # type: ignore[union-attr]
    v2_log = Path(follow_v2.base_dir, "postgres", "server.log").read_text()
    assert v1.postgres.password not in v2_log
    # a rollback after the cutover: v1 equals its state at the freeze (the follow period's writes
    # are v1's data too), so nothing is overwritten; v1 takes writes again, follow mode leaves
    # nothing, and the row v2 took after the switch (follow_int, above) is named as not carried
    back = run_job(follow_resources, instance, "rollback_job")
    assert back.success, failure_messages(back)
    assert check_results(back) == {"v1_matches_backup": True}
    meta = materialization_metadata(back, "v1_reinstated")
    assert meta["v1_action"].startswith("none needed: v1 equals v1 as frozen at the follow-mode")
    assert meta["v2_writes_not_carried_back"] == "public.follow_int"
    assert "default_transaction_read_only" in meta["follow_objects_removed"]
    assert v1_follow_objects(v1) == NOTHING
    with psycopg.connect(**v1.postgres.conninfo_kwargs(), autocommit=True) as conn:
        assert missing_in_v2(writers.acked, conn) == []  # every acknowledged write is in v1 too
        conn.execute("INSERT INTO follow_int (v) VALUES ('v1 again')")
    assert client_for(v1.redis).set("after", "rollback")  # type: ignore[arg-type]


def materialization_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    """The metadata values ``asset``'s materialization in ``result`` recorded."""
    event = next(
        e for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key == dg.AssetKey(asset)
    )  # fmt: skip
    return {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}  # type: ignore[union-attr]


def cli_env(resources: dict[str, Any]) -> dict[str, str]:
    """The environment that points the `cartrita` command at the test's servers and folders."""
    demo, v2, root = resources["v1"], resources["v2"], resources["follow"].root
    return {
        "CARTRITA_V1_ENV_FILE": str(Path(demo.demo_dir) / ".env"),
        "CARTRITA_STATE_DIR": str(Path(root).parent),
        "CARTRITA_V2_PG_PORT": str(v2.pg_port),
        "CARTRITA_V2_REDIS_PORT": str(v2.redis_port),
        "DAGSTER_HOME": str(Path(root).parent / "dagster_home"),
    }


def cli_abort(resources: dict[str, Any]) -> int:
    """`cartrita follow abort` against the test's servers (through its environment variables)."""
    import os

    env = cli_env(resources)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return cli_main(["follow", "abort"])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _env_file_resources(resources: dict[str, Any], demo: DemoV1) -> dict[str, Any]:
    """The same servers read through v1's .env, as for a real v1 (the demo is not restarted)."""
    from support.demo import v1_source

    return {**resources, "v1": v1_source(demo, env_file=demo.env_file)}


def test_missing_wal_level_and_keyless_tables_are_refused_before_v1_changes(
    follow_v1: DemoV1, follow_resources: dict[str, Any], instance: dg.DagsterInstance
) -> None:
    v1 = follow_v1.ensure()
    resources = _env_file_resources(follow_resources, follow_v1)
    no_consent = {"ops": {"v1_backup": {"config": {"follow": True}}}}
    result = materialize(resources, instance, "v1_backup", run_config=no_consent)
    assert not result.success
    (message,) = failure_messages(result)
    assert "public.follow_keyless" in message and "--replica-identity-full" in message
    assert "wal_level" not in message
    assert v1_follow_objects(v1) == NOTHING
    pg = follow_v1.servers()[0]
    with connect(pg.settings(), role="v1") as conn:
        conn.execute("ALTER SYSTEM SET wal_level = replica")
    pg.restart()
    try:
        result = materialize(resources, instance, "v1_backup", run_config=FOLLOW)
        assert not result.success
        (message,) = failure_messages(result)
        assert "wal_level = replica" in message and "wal_level=logical" in message
        assert v1_follow_objects(v1) == NOTHING
    finally:
        with connect(pg.settings(), role="v1") as conn:
            conn.execute("ALTER SYSTEM RESET wal_level")
        pg.restart()


def test_ddl_during_follow_refuses_the_cutover_before_the_freeze(
    follow_v1: DemoV1, follow_resources: dict[str, Any], instance: dg.DagsterInstance
) -> None:
    v1 = follow_v1.ensure()
    follow(follow_resources, instance)
    with psycopg.connect(**v1.postgres.conninfo_kwargs(), autocommit=True) as conn:
        conn.execute("ALTER TABLE follow_int ADD COLUMN note text")
    result = run_job(follow_resources, instance, "cutover_job")
    assert not result.success
    (message,) = failure_messages(result)
    assert "table definitions changed" in message and "v1 still takes writes" in message
    left = v1_follow_objects(v1)
    assert left["settings"] == []  # never frozen
    with psycopg.connect(**v1.postgres.conninfo_kwargs(), autocommit=True) as conn:
        conn.execute("INSERT INTO follow_int (v) VALUES ('still writable')")
    assert cli_abort(follow_resources) == 0
    assert v1_follow_objects(v1) == NOTHING


def test_a_rerun_after_a_crash_cleans_up_and_abort_leaves_nothing(
    follow_v1: DemoV1, follow_resources: dict[str, Any], follow_v2: LocalV2Target,
    instance: dg.DagsterInstance,
) -> None:  # fmt: skip
    """A run that stopped mid-follow leaves exactly what the ledger lists (the process holds
    nothing of it); a re-run removes it first, and abort removes everything."""
    v1 = follow_v1.ensure()
    # the embedded demo v1 is the project's own: plain follow mode may set REPLICA IDENTITY FULL
    plain = {"ops": {"v1_backup": {"config": {"follow": True}}}}
    first = materialize(follow_resources, instance, *UP_TO_STREAM, run_config=plain)
    assert first.success, failure_messages(first)
    consent = materialization_metadata(first, "v1_backup")["follow_full_identity_consent"]
    assert consent.startswith("implied: the embedded demo v1")
    follow(follow_resources, instance)  # the re-run: the earlier slot is dropped, a new one made
    left = v1_follow_objects(v1)
    assert len(left["slots"]) == 1 and len(left["publications"]) == 1
    assert ("follow_keyless",) in left["full_identity"]
    assert cli_abort(follow_resources) == 0
    assert v1_follow_objects(v1) == NOTHING
    db = v1.postgres.dbname
    with psycopg.connect(**follow_v2.admin(db).conninfo_kwargs(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_subscription").fetchone() == (0,)
    assert client_for(follow_v2.redis()).info("replication")["role"] == "master"


def test_rows_applied_by_replication_reach_the_embedding_change_capture(
    follow_v1: DemoV1, follow_resources: dict[str, Any], follow_v2: LocalV2Target,
    instance: dg.DagsterInstance,
) -> None:  # fmt: skip
    """Replication applies rows with session_replication_role = replica; the change-capture
    trigger is ENABLE ALWAYS so stale_embeddings_sensor still sees them."""
    from cartrita_assets.vectors.changes import install_change_triggers
    from cartrita_assets.vectors.sources import Source

    v1 = follow_v1.ensure()
    follow(follow_resources, instance)
    assert materialize(follow_resources, instance, "schema_version").success
    db = v1.postgres.dbname
    with psycopg.connect(**follow_v2.admin(db).conninfo_kwargs(), autocommit=True) as v2c:
        install_change_triggers(v2c, [Source("follow_int", "id", ("v",))])
        with psycopg.connect(**v1.postgres.conninfo_kwargs(), autocommit=True) as v1c:
            row = v1c.execute("INSERT INTO follow_int (v) VALUES ('replicated') RETURNING id")
            new_id = str(row.fetchone()[0])  # type: ignore[index]
        deadline = time.monotonic() + 30
        seen: list[tuple[str, str]] = []
        while time.monotonic() < deadline and ("follow_int", new_id) not in seen:
            time.sleep(0.2)
            seen = v2c.execute(
                "SELECT source_table, source_id FROM public.embedding_source_changes"
            ).fetchall()
        assert ("follow_int", new_id) in seen
    assert cli_abort(follow_resources) == 0


def test_a_difference_at_the_switch_point_fails_the_cutover_loudly(
    follow_v1: DemoV1, follow_resources: dict[str, Any], follow_v2: LocalV2Target,
    instance: dg.DagsterInstance,
) -> None:  # fmt: skip
    """A row v2 has and v1 never had (written to v2 behind replication's back) is named by
    v2_matches_frozen_v1 and fails the run; v1 stays frozen until abort."""
    v1 = follow_v1.ensure()
    follow(follow_resources, instance)
    db = v1.postgres.dbname
    with psycopg.connect(**follow_v2.admin(db).conninfo_kwargs(), autocommit=True) as conn:
        conn.execute("INSERT INTO follow_uuid (id, v) VALUES (gen_random_uuid(), 'only in v2')")
    result = run_job(follow_resources, instance, "cutover_job")
    assert not result.success
    assert check_results(result)["v2_matches_frozen_v1"] is False
    evaluation = next(
        e.event_specific_data for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    )  # fmt: skip
    differences = str(evaluation.metadata["tables_different"].value)  # type: ignore[union-attr]
    assert "public.follow_uuid: v1 0 rows, v2 1 rows" in differences
    assert "follow_int" not in differences
    assert cli_abort(follow_resources) == 0
    assert v1_follow_objects(v1) == NOTHING


def test_a_run_killed_mid_follow_then_abort_leaves_nothing_on_v1(
    follow_v1: DemoV1, follow_resources: dict[str, Any], follow_v2: LocalV2Target,
    test_dir: Path,
) -> None:  # fmt: skip
    """`cartrita forward --follow` killed (SIGKILL) once v2 subscribes, then `follow abort`."""
    import json
    import os
    import signal
    import subprocess
    import sys

    v1 = follow_v1.ensure()
    env = {**os.environ, **cli_env(follow_resources)}
    Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "cartrita_assets.cli.main", "forward", "--follow",
           "--replica-identity-full"]  # fmt: skip
    ledger = Path(follow_resources["follow"].root) / "ledger.json"
    with (test_dir / "forward.log").open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None:
                if ledger.exists() and json.loads(ledger.read_text()).get("redis_replica"):
                    break
                time.sleep(0.1)
            assert proc.poll() is None, (test_dir / "forward.log").read_text()[-3000:]
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert v1_follow_objects(v1)["slots"] != []  # the kill left follow mode running
    assert cli_abort(follow_resources) == 0
    assert v1_follow_objects(v1) == NOTHING
    db = v1.postgres.dbname
    with psycopg.connect(**follow_v2.admin(db).conninfo_kwargs(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_subscription").fetchone() == (0,)
