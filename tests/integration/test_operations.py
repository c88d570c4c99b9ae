"""Day-to-day operation on a real v2: change triggers and the stale-embeddings sensor, the index
volume sensor, the checks-only health job and its schedule, and the failure alerts."""

import json
import stat
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import numpy as np
import psycopg
import pytest
from support.runs import check_results, materialized
from support.scratch import embedding_cache
from support.servers import SessionV2

from cartrita_assets.backup.store import BackupStore
from cartrita_assets.backup.v2_store import V2BackupStore
from cartrita_assets.cluster.v2 import LocalV2Target
from cartrita_assets.definitions import JOBS, SCHEDULES, SENSORS, build_definitions
from cartrita_assets.defs.report.alerts import (
    check_failure_alert_sensor,
)
from cartrita_assets.defs.vectors.sensors import (
    index_volume_sensor,
    stale_embeddings_sensor,
)
from cartrita_assets.environments import build_resources
from cartrita_assets.pg.connect import connect
from cartrita_assets.redis_copy.client import client_for
from cartrita_assets.resources.embedder import EmbedderResource
from cartrita_assets.resources.lock import MigrationLock, release_run_lock
from cartrita_assets.resources.v1 import V1Source
from cartrita_assets.vectors.changes import (
    install_change_triggers,
    pending_changes,
    prune_changes,
)
from cartrita_assets.vectors.indexing import ensure_indexes
from cartrita_assets.vectors.sources import Source

pytestmark = pytest.mark.integration

DB = "vec"
# Quotes, a space and capitals in every name: the trigger SQL must quote them all.
TABLE = "Passage's notes"
SOURCE = Source(TABLE, "Note ID", ("Title", "body"))
SOURCE_CONFIG = {"table": TABLE, "id_column": "Note ID", "text_columns": ["Title", "body"]}
ROWS = {
    1: ("Password help", "How to reset a forgotten password."),
    2: ("Cookies", "Chocolate chip cookies: butter, sugar, flour."),
    3: ("Databases", "Tuning PostgreSQL vector indexes with HNSW."),
    4: ("Weather", "Rain in Paris today."),
    5: ("Running", "A marathon plan, week by week."),
    6: ("Plants", "Water succulents sparingly."),
}


@pytest.fixture
def ops_resources(v2: LocalV2Target, test_dir: Path, base_dir: Path) -> dict:
    """The local environment's resources (whatever they are now) on the test's v2, without a
    v1 server (no step run here reads v1), with the real local model and the session's cache."""
    return {
        **build_resources("local", test_dir / "state"),
        "v1": V1Source(allow_demo=False, default_env_file=str(test_dir / "no-v1.env")),
        "v2": v2,
        "backups": BackupStore(root=str(test_dir / "backups")),
        "migration_lock": MigrationLock(path=str(test_dir / "migration.lock")),
        "v2_backups": V2BackupStore(root=str(test_dir / "v2-backups")),
        "embedder": EmbedderResource(cache_path=str(embedding_cache(base_dir))),
    }


@pytest.fixture
def defs(ops_resources: dict) -> dg.Definitions:
    built = build_definitions(ops_resources)
    names = {j.name for j in JOBS} | {s.name for s in SENSORS} | {s.name for s in SCHEDULES}
    assert names <= {j.name for j in built.jobs or []} | {s.name for s in built.sensors or []} | {
        s.name for s in built.schedules or []
    }  # the project's definitions carry every job, sensor and schedule
    return built


@pytest.fixture
def db(
    v2: LocalV2Target,
    session_v2: SessionV2,
    instance: dg.DagsterInstance,
    monkeypatch,
    test_dir: Path,
):
    """A migrated database (a clone of the run's migrated template) on the test's v2, recorded
    as restored_db's latest database."""
    monkeypatch.setenv("CARTRITA_STATE_DIR", str(test_dir / "state"))
    session_v2.migrated_database(DB)
    instance.report_runless_asset_event(
        dg.AssetMaterialization("restored_db", metadata={"database": DB})
    )
    with connect(v2.admin(DB), role="test") as conn:
        yield conn


def _notes(conn: psycopg.Connection) -> None:
    conn.execute(
        'CREATE TABLE "Passage\'s notes" ("Note ID" integer PRIMARY KEY, "Title" text, body text, '
        "views integer NOT NULL DEFAULT 0)"
    )
    for nid, (title, body) in ROWS.items():
        conn.execute('INSERT INTO "Passage\'s notes" VALUES (%s, %s, %s)', (nid, title, body))


def _run(defs: dg.Definitions, instance, job: str, run_config: dict | None = None):
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, run_config=run_config or {}, raise_on_error=False
    )
    release_run_lock(result.run_id)
    return result


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = result.asset_materializations_for_node("embeddings_index")
    return {k: v.value for k, v in event.metadata.items()}


def _changes(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    return conn.execute(
        "SELECT source_table, source_id, op FROM embedding_source_changes ORDER BY id"
    ).fetchall()


def _sensor_context(instance, ops_resources, cursor=None):
    return dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"v2": ops_resources["v2"]}
    )


def test_stale_sensor_reindexes_exactly_the_changed_rows(db, defs, instance, ops_resources):
    _notes(db)
    config = {"ops": {"embeddings_index": {"config": {"sources": [SOURCE_CONFIG]}}}}
    first = _run(defs, instance, "reindex_embeddings_job", config)
    assert first.success and _metadata(first)["inserted"] == 6
    assert _changes(db) == []  # the rows predate the trigger the run installed

    # the application writes as a role with no privilege on the change log
    db.execute("CREATE ROLE cartrita_app NOLOGIN")
    db.execute('GRANT SELECT, INSERT, UPDATE, DELETE ON "Passage\'s notes" TO cartrita_app')
    db.execute("SET ROLE cartrita_app")
    db.execute('UPDATE "Passage\'s notes" SET body = \'Reset it from the login page.\' '
               'WHERE "Note ID" = 1')  # fmt: skip
    db.execute("INSERT INTO \"Passage's notes\" VALUES (7, 'Tea', 'Green tea, not boiling.')")
    db.execute('DELETE FROM "Passage\'s notes" WHERE "Note ID" = 6')
    db.execute('UPDATE "Passage\'s notes" SET views = views + 1')  # not embedded: no change row
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("SELECT * FROM embedding_source_changes")
    db.execute("RESET ROLE")
    assert _changes(db) == [(TABLE, "1", "U"), (TABLE, "7", "I"), (TABLE, "6", "D")]

    context = _sensor_context(instance, ops_resources)
    request = stale_embeddings_sensor(context)
    assert isinstance(request, dg.RunRequest), request
    config = request.run_config["ops"]["embeddings_index"]["config"]
    assert config["source_ids"] == {TABLE: ["1", "6", "7"]}
    assert [s["table"] for s in config["sources"]] == [TABLE]  # the sources the last run used
    assert request.run_key.startswith("source-changes-")

    second = _run(defs, instance, "reindex_embeddings_job", request.run_config)
    meta = _metadata(second)
    assert (meta["inserted"], meta["updated"], meta["deleted"], meta["unchanged"]) == (1, 1, 1, 0)
    assert meta["skipped"] == 0
    assert check_results(second)["embeddings_are_fresh"]
    ids = db.execute("SELECT source_id FROM embeddings ORDER BY source_id::int").fetchall()
    assert [i for (i,) in ids] == ["1", "2", "3", "4", "5", "7"]

    again = stale_embeddings_sensor(_sensor_context(instance, ops_resources, context.cursor))
    assert isinstance(again, dg.SkipReason)
    last_id = json.loads(context.cursor)["last_id"]
    assert again.skip_message == f"no source row changed since change id {last_id}"
    assert _changes(db) == []  # the second tick pruned what the first handed to the run


def test_change_log_is_exact_under_concurrency_and_id_changes(db, v2):
    _notes(db)
    assert install_change_triggers(db, [SOURCE]) == [f"{TABLE}: installed"]
    assert install_change_triggers(db, [SOURCE]) == [f"{TABLE}: unchanged"]  # idempotent
    db.execute('UPDATE "Passage\'s notes" SET views = 9 WHERE "Note ID" = 2')
    assert _changes(db) == []  # UPDATE OF: only id, text and vector columns count
    db.execute('UPDATE "Passage\'s notes" SET "Note ID" = 20 WHERE "Note ID" = 2')
    assert _changes(db) == [(TABLE, "2", "D"), (TABLE, "20", "U")]
    start = pending_changes(db, 0)
    assert start.ids == {TABLE: ["2", "20"]}

    # a transaction takes a change id, a later one commits first: nothing is skipped
    with connect(v2.admin(DB), role="test", autocommit=False) as slow:
        slow.execute('UPDATE "Passage\'s notes" SET "Title" = \'slow\' WHERE "Note ID" = 3')
        db.execute('UPDATE "Passage\'s notes" SET "Title" = \'fast\' WHERE "Note ID" = 4')
        during = pending_changes(db, start.watermark)
        assert (during.rows, during.waiting) == (0, 1)  # 4 waits behind the open transaction
        slow.commit()
    after = pending_changes(db, during.watermark)
    assert after.ids == {TABLE: ["3", "4"]} and after.first_id < after.last_id
    assert pending_changes(db, 0, max_ids=2).ids is None  # too many to list
    assert prune_changes(db, start.watermark) == 2
    assert len(_changes(db)) == 2


def _vec(values) -> str:
    return "[" + ",".join(f"{float(x):.6f}" for x in values) + "]"


def _add_vectors(db, n: int, start: int = 0, model: str = "gen", dims: int = 16) -> None:
    rng = np.random.default_rng(start)
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO embeddings (source_table, source_id, model, dimensions, content, "
            "content_hash, embedding) SELECT 'gen', %s, %s, %s, %s, "
            "embedding_content_hash(%s, %s), %s::vector",
            [(str(i), model, dims, f"row {i}", model, f"row {i}", _vec(rng.normal(size=dims)))
             for i in range(start, start + n)],
        )  # fmt: skip
    db.execute("INSERT INTO embedding_models (model, dimensions) VALUES (%s, %s) "
               "ON CONFLICT DO NOTHING", (model, dims))  # fmt: skip


def test_index_volume_sensor_rebuilds_on_2x_drift_once(
    db, defs, instance, ops_resources, monkeypatch
):
    monkeypatch.setenv("CARTRITA_EXACT_BELOW", "10")
    _add_vectors(db, 20)
    ensure_indexes(db, lambda _m: None, exact_below=10)  # HNSW on 20 rows
    skip = index_volume_sensor(_sensor_context(instance, ops_resources))
    assert isinstance(skip, dg.SkipReason)
    assert "gen: 20 rows, hnsw (built on 20)" in skip.skip_message

    _add_vectors(db, 25, start=100)  # 45 rows: more than 2x the 20 it was built on
    context = _sensor_context(instance, ops_resources)
    request = index_volume_sensor(context)
    assert isinstance(request, dg.RunRequest), request
    config = request.run_config["ops"]["embeddings_index"]["config"]
    assert (config["source_ids"], config["rebuild_models"]) == ({}, ["gen"])
    assert config["exact_below"] == 10
    repeat = index_volume_sensor(_sensor_context(instance, ops_resources, context.cursor))
    assert "rebuild already requested at 45" in repeat.skip_message

    result = _run(defs, instance, "reindex_embeddings_job", request.run_config)
    assert result.success, result
    assert "| gen | 45 | hnsw | m=16, ef_construction=64 | built |" in _metadata(result)["indexes"]
    assert db.execute("SELECT rows_at_build FROM embedding_models").fetchone() == (45,)
    settled = index_volume_sensor(_sensor_context(instance, ops_resources, context.cursor))
    assert "gen: 45 rows, hnsw (built on 45)" in settled.skip_message

    monkeypatch.setenv("CARTRITA_HNSW_MAX_BYTES", "64")  # the rule now wants IVFFlat
    flip = index_volume_sensor(_sensor_context(instance, ops_resources, context.cursor))
    assert isinstance(flip, dg.RunRequest)
    assert flip.run_config["ops"]["embeddings_index"]["config"]["hnsw_max_bytes"] == 64


def test_health_checks_job_checks_only_and_alerts_on_failures(
    db, defs, instance, ops_resources, test_dir, monkeypatch
):
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("CARTRITA_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/x")

    _notes(db)
    config = {"ops": {"embeddings_index": {"config": {"sources": [SOURCE_CONFIG]}}}}
    assert _run(defs, instance, "reindex_embeddings_job", config).success
    db.execute('UPDATE "Passage\'s notes" SET body = \'edited behind its back\' '
               'WHERE "Note ID" = 1')  # fmt: skip

    result = _run(defs, instance, "v2_health_checks_job")
    types = [e.event_type_value for e in result.all_events]
    assert types.count("ASSET_CHECK_EVALUATION") >= 1 and "ASSET_MATERIALIZATION" not in types
    assert materialized(result) == set()
    checks = check_results(result)
    assert checks["embeddings_are_fresh"] is False
    assert checks["guide_objects_exist"] and checks["all_migrations_applied"]
    assert checks["redis_responds"] and "row_counts_match_v1" not in checks
    assert result.success  # a failed non-blocking check does not fail the run: the sensor tells

    sensor_context = dg.build_run_status_sensor_context(
        sensor_name="check_failure_alert_sensor",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_success_event(),
    )
    check_failure_alert_sensor(sensor_context)
    server.shutdown()

    path = test_dir / "state" / "alerts" / "alerts.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    fresh = [a for a in lines if a.get("check") == "embeddings_are_fresh"]
    assert len(fresh) == 1 and fresh[0]["kind"] == "check_failed"
    assert fresh[0]["asset"] == "embeddings_index" and fresh[0]["run_id"] == result.run_id
    assert "stale" in fresh[0]["problems"]
    assert ops_resources["v2"].admin(DB).password not in path.read_text()
    assert len(received) == 1 and received[0]["alerts"] == lines


def test_a_changed_source_row_invalidates_exactly_its_cache_keys(
    db, defs, instance, ops_resources, v2, monkeypatch
):
    """The rule of vectors/invalidation.py on a real v2 Redis: the keys of rows whose embedding
    was replaced or deleted go, in every database; keys of other rows, of a first-embedded row,
    of look-alike ids and of other sources stay."""
    rule = f"{TABLE}=note:{{id}},note:{{id}}:*;other=note:{{id}}"
    monkeypatch.setenv("CARTRITA_CACHE_KEY_PATTERNS", rule)
    redis0 = client_for(v2.redis())
    redis1 = client_for(replace(v2.redis(), db=1))
    gone = {(0, "note:1"), (0, "note:1:summary"), (0, "note:1:tags:x"), (1, "note:1:summary"),
            (0, "note:6"), (0, "note:6:a")}  # fmt: skip
    kept = {(0, "note:2"), (0, "note:2:summary"), (0, "note:12"), (0, "note:12:summary"),
            (0, "note:1x"), (0, "note:7"), (0, "other:1"), (1, "note:3"),
            (0, "note:*")}  # fmt: skip
    for db_index, key in gone | kept:
        (redis0 if db_index == 0 else redis1).set(key, "cached", ex=3600)
    keys_before = {(0, k) for k in redis0.keys()} | {(1, k) for k in redis1.keys()}

    _notes(db)
    config = {"ops": {"embeddings_index": {"config": {"sources": [SOURCE_CONFIG]}}}}
    first = _run(defs, instance, "reindex_embeddings_job", config)
    # every row embedded for the first time: nothing was derived from an embedding yet
    assert first.success and _metadata(first)["cache_keys_invalidated"] == 0
    assert {(0, k) for k in redis0.keys()} | {(1, k) for k in redis1.keys()} == keys_before

    db.execute('UPDATE "Passage\'s notes" SET body = \'Reset it from the login page.\' '
               'WHERE "Note ID" = 1')  # fmt: skip
    db.execute('DELETE FROM "Passage\'s notes" WHERE "Note ID" = 6')
    db.execute("INSERT INTO \"Passage's notes\" VALUES (7, 'Tea', 'Green tea, not boiling.')")
    request = stale_embeddings_sensor(_sensor_context(instance, ops_resources))
    assert isinstance(request, dg.RunRequest), request
    second = _run(defs, instance, "reindex_embeddings_job", request.run_config)
    meta = _metadata(second)
    assert second.success and meta["cache_keys_invalidated"] == len(gone)
    assert meta["cache_key_patterns"] == f"{TABLE}=note:{{id}},note:{{id}}:*; other=note:{{id}}"
    left = {(0, k.decode()) for k in redis0.keys()} | {(1, k.decode()) for k in redis1.keys()}
    assert left == {(d, k) for d, k in kept}
    assert redis0.ttl("note:2") > 0  # what stays is untouched, its expiry included
