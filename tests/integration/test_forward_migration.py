"""The forward data path on real servers: nothing lost, bad input stopped, re-runs converge."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import dagster as dg
import pytest
from support.demo import v1_source
from support.ports import free_port
from support.runs import (
    check_results,
    event_log_text,
    failure_messages,
    local_resources,
    materialize,
    materialized,
    run_job,
)

from cartrita_assets import redis_copy
from cartrita_assets.backup.manifest import DUMP_NAME, Manifest
from cartrita_assets.cluster.v2 import LocalV2Target
from cartrita_assets.pg.connect import connect
from cartrita_assets.redis_copy.client import client_for

pytestmark = pytest.mark.integration

FORWARD_CHECKS = {
    "env_copies_are_exact_and_private",
    "migration_checksums_match",
    "all_migrations_applied",
    "guide_objects_exist",
    "pgvector_extension_available",
    "redis_responds",
    "backup_is_restorable",
    "backup_matches_v1_snapshot",
    "row_counts_match_v1",
    "content_hashes_match_v1",
    "sequences_match_v1",
    "redis_keys_match_v1",
    "v1_unchanged_since_backup",
    "vector_index_is_valid",
    "similarity_search_finds_itself",
    "recall_at_10_meets_target",
    "hybrid_search_combines_both",
    "embeddings_are_fresh",
    "vectors_are_well_formed",
    "integration_suite_passes",
}
# Warnings: they report data to look at and do not fail the migration.
WARN_CHECKS = {"vectors_are_well_formed"}

# An independent comparison: every row's text, sorted, aggregated, per table.
TABLE_DIGEST = "SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {} t"


def _table_digests(settings, dbname: str) -> dict[str, str]:
    from psycopg import sql

    with connect(settings, role="test", dbname=dbname) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        tables = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
        return {
            f"{s}.{t}": conn.execute(sql.SQL(TABLE_DIGEST).format(sql.Identifier(s, t))).fetchone()[
                0
            ]
            for s, t in tables
        }


def _sequences(settings, dbname: str) -> dict[str, tuple[int, bool]]:
    from psycopg import sql

    with connect(settings, role="test", dbname=dbname) as conn:
        names = conn.execute("SELECT schemaname, sequencename FROM pg_sequences").fetchall()
        return {
            f"{s}.{n}": tuple(
                conn.execute(
                    sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(s, n))
                ).fetchone()
            )
            for s, n in names
        }


@dataclass
class Forwarded:
    """One green forward run and what it ran on."""

    resources: dict[str, Any]
    instance: dg.DagsterInstance
    result: dg.ExecuteInProcessResult


# The tests sharing 'forwarded' run on one pytest-xdist worker, which sets it up once
# (support/groups.py says why the mark is written here).
SHARES_FORWARDED = pytest.mark.xdist_group("test_forward_migration")


@pytest.fixture(scope="module")
def forwarded(base_dir: Path, demo_v1) -> Iterator[Forwarded]:
    """One forward run on a fresh v2 of this module's own, shared by the tests that only read
    what it left (v2, the backup, the report, the run's events) or change v2 and put it back."""
    folder = base_dir / "forwarded"
    folder.mkdir()
    folder.chmod(0o755)
    v2 = LocalV2Target(
        base_dir=str(folder / "v2"), pg_port=free_port(), redis_port=free_port(), durable=False
    )
    resources = local_resources(demo_v1, v2, folder, base_dir)
    try:
        instance = dg.DagsterInstance.ephemeral()
        yield Forwarded(resources, instance, run_job(resources, instance))
    finally:
        v2.stop(lambda _m: None)


def _redis_state(settings) -> dict[tuple[int, bytes], tuple[str, int | None]]:
    records = redis_copy.read_keyspace(lambda db: client_for(replace(settings, db=db)))
    return {(r.db, r.key): (r.digest(), r.expire_at_ms) for r in records}


@SHARES_FORWARDED
def test_demo_v1_to_v2_loses_nothing(forwarded):
    resources, result = forwarded.resources, forwarded.result

    assert result.success, failure_messages(result)
    assert materialized(result) == {
        "v1_backup",
        "k8s_secrets",
        "pgvector_cluster",
        "restored_db",
        "schema_version",
        "embeddings_index",
        "integration_report",
    }
    checks = check_results(result, warnings=True)
    assert set(checks) == FORWARD_CHECKS
    assert all(v for k, v in checks.items() if k not in WARN_CHECKS), checks
    # v2 was hashed table by table as pg_restore wrote it, and no table needed a second hash
    measured = {
        e.event_specific_data.check_name: e.event_specific_data.metadata["v2_measured"].value
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name in ("row_counts_match_v1", "content_hashes_match_v1")
    }
    tables = len(v1_tables := _table_digests(resources["v1"].settings().postgres, "cartrita"))
    assert set(measured.values()) == {
        f"{tables} table(s) hashed as pg_restore wrote them and unchanged since (row counts, "
        "xmin, layout); 0 hashed now"
    }, measured
    # Verified independently of the project's own checks: tables, rows, sequences, Redis.
    v1 = resources["v1"].settings()
    v2 = resources["v2"]
    v2_tables = _table_digests(v2.admin(), "cartrita")
    assert len(v1_tables) >= 10
    assert {name: v2_tables.get(name) for name in v1_tables} == v1_tables
    assert set(v2_tables) - set(v1_tables) == {  # what the v2 schema adds, nothing else
        "public.schema_migrations", "public.embeddings", "public.embedding_models",
        "public.search_performance_metrics", "public.embedding_source_changes",
        "public.embedding_terms", "public.search_presets", "public.search_preset_usage",
    }  # fmt: skip
    v1_sequences, v2_sequences = (
        _sequences(v1.postgres, "cartrita"),
        _sequences(v2.admin(), "cartrita"),
    )
    assert {name: v2_sequences.get(name) for name in v1_sequences} == v1_sequences
    v1_keys, v2_keys = _redis_state(v1.redis), _redis_state(v2.redis())
    assert v1_keys.keys() == v2_keys.keys() and len(v1_keys) > 50
    for key, (digest, expiry) in v1_keys.items():
        assert v2_keys[key][0] == digest
        assert (expiry is None) == (v2_keys[key][1] is None)
        if expiry is not None:
            assert abs(v2_keys[key][1] - expiry) <= 2000
    # v2 Redis requires v1's password: the application's credentials carry over unchanged.
    assert client_for(replace(v2.redis(), password=v1.redis.password)).ping()
    # The app role keeps v1's password in v2.
    with connect(
        replace(v2.admin("cartrita"), user=v1.postgres.user, password=v1.postgres.password),
        role="test",
    ):
        pass
    # Every text source row is embedded with the local model; v1's vectors are imported as is.
    with connect(v2.admin("cartrita"), role="test") as conn:
        per_model = dict(conn.execute("SELECT model, count(*) FROM embeddings GROUP BY 1"))
        same = conn.execute(
            "SELECT bool_and(e.embedding::text = k.embedding::text), count(*) FROM embeddings e "
            "JOIN knowledge_entries k ON e.source_id = k.id::text "
            "WHERE e.source_table = 'knowledge_entries' AND e.model = 'text-embedding-3-small'"
        ).fetchone()
    assert per_model["all-MiniLM-L6-v2"] > 500
    assert {"text-embedding-3-small", "text-embedding-3-large"} <= set(per_model)
    assert same[0] is True and same[1] > 10
    # The forward run ends with the integration report: its files exist and every case passed.
    (folder,) = list((Path(resources["reports"].root)).iterdir())
    report = json.loads((folder / "report.json").read_text())
    assert report["passed"] and len(report["cases"]) >= 12
    assert {c["suite"] for c in report["cases"]} == {"connectivity", "migration", "vector"}
    assert (folder / "report.md").read_text().startswith("# v2 integration report")
    chart = ElementTree.parse(folder / "latency.svg").getroot()
    assert chart.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(chart.findall(".//{http://www.w3.org/2000/svg}rect[@class='box']")) == 2


def test_rerun_converges(resources, instance):
    first = run_job(resources, instance)
    second = run_job(resources, instance)

    assert first.success and second.success, failure_messages(second)
    assert all(check_results(second).values())
    restored = [
        e.event_specific_data.materialization.metadata["action"].value
        for e in second.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
        and e.event_specific_data.materialization.asset_key.to_user_string() == "restored_db"
    ]
    assert restored == ["replaced"]


def _downstream_probe() -> dg.AssetsDefinition:
    @dg.asset(deps=["restored_db"])
    def downstream_probe() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    return downstream_probe


def _checks_and_probe(resources, instance) -> dg.ExecuteInProcessResult:
    from cartrita_assets.definitions import build_definitions

    probe = _downstream_probe()
    job = dg.define_asset_job(
        "verify_then_probe",
        selection=dg.AssetSelection.checks_for_assets("restored_db")
        | dg.AssetSelection.assets(probe),
    )
    defs = dg.Definitions.merge(
        build_definitions(resources), dg.Definitions(assets=[probe], jobs=[job])
    )
    return defs.resolve_job_def("verify_then_probe").execute_in_process(
        instance=instance, raise_on_error=False
    )


@SHARES_FORWARDED
def test_changed_v2_row_fails_content_hash_and_blocks_downstream(forwarded):
    resources, instance = forwarded.resources, forwarded.instance
    assert forwarded.result.success
    untouched = _checks_and_probe(resources, instance)
    assert check_results(untouched)["content_hashes_match_v1"] is True
    assert "downstream_probe" in materialized(untouched)

    with connect(resources["v2"].admin("cartrita"), role="test") as conn:
        (name,) = conn.execute("SELECT name FROM public.users WHERE id = 3").fetchone()
        conn.execute("UPDATE public.users SET name = name || '!' WHERE id = 3")
    try:
        result = _checks_and_probe(resources, instance)

        checks = check_results(result)
        assert checks["content_hashes_match_v1"] is False
        assert checks["row_counts_match_v1"] is True  # same rows, different content
        assert "downstream_probe" not in materialized(result)
    finally:  # leave the shared run's v2 as the run made it
        with connect(resources["v2"].admin("cartrita"), role="test") as conn:
            conn.execute("UPDATE public.users SET name = %s WHERE id = 3", (name,))


@SHARES_FORWARDED
def test_one_v2_row_missing_fails_row_counts_and_blocks_downstream(forwarded):
    resources, instance = forwarded.resources, forwarded.instance
    assert forwarded.result.success
    # the row is kept byte for byte in a temporary table of this session and put back from there
    with connect(resources["v2"].admin("cartrita"), role="test") as keeper:
        keeper.execute(
            "CREATE TEMP TABLE kept AS SELECT * FROM public.user_settings "
            "WHERE ctid = (SELECT min(ctid) FROM public.user_settings)"
        )
        keeper.execute("DELETE FROM public.user_settings WHERE ctid = "
                       "(SELECT min(ctid) FROM public.user_settings)")  # fmt: skip
        try:
            result = _checks_and_probe(resources, instance)

            checks = check_results(result)
            assert checks["row_counts_match_v1"] is False
            assert checks["content_hashes_match_v1"] is False
            assert checks["sequences_match_v1"] is True and checks["redis_keys_match_v1"] is True
            assert "downstream_probe" not in materialized(result)
        finally:  # leave the shared run's v2 as the run made it
            keeper.execute("INSERT INTO public.user_settings SELECT * FROM kept")
    assert all(check_results(_checks_and_probe(resources, instance)).values())


@SHARES_FORWARDED
def test_one_v2_sequence_behind_fails_sequences_and_blocks_downstream(forwarded):
    resources, instance = forwarded.resources, forwarded.instance
    assert forwarded.result.success
    with connect(resources["v2"].admin("cartrita"), role="test") as conn:
        last, called = conn.execute(
            "SELECT last_value, is_called FROM public.invoice_number_seq"
        ).fetchone()
        conn.execute("SELECT setval('public.invoice_number_seq', %s, true)", (last - 1,))
    try:
        result = _checks_and_probe(resources, instance)

        checks = check_results(result)
        assert checks["sequences_match_v1"] is False
        assert checks["row_counts_match_v1"] is True and checks["content_hashes_match_v1"] is True
        assert "downstream_probe" not in materialized(result)
    finally:
        with connect(resources["v2"].admin("cartrita"), role="test") as conn:
            conn.execute("SELECT setval('public.invoice_number_seq', %s, %s)", (last, called))


def test_tampered_dump_is_refused_before_restore(resources, instance):
    assert materialize(resources, instance, "v1_backup", "k8s_secrets", "pgvector_cluster").success
    folder = Path(resources["backups"].root)
    data_file = sorted((next(folder.iterdir()) / DUMP_NAME).glob("*.dat"))[0]
    data_file.write_bytes(data_file.read_bytes().replace(b"\t", b"\t ", 1))

    result = materialize(resources, instance, "restored_db")

    assert not result.success
    assert "restored_db" not in materialized(result)
    messages = " ".join(failure_messages(result))
    assert "does not match its manifest" in messages and data_file.name in messages
    with connect(resources["v2"].admin(), role="test") as conn:
        found = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'cartrita%'")
        assert found.fetchone()[0] == 0


@SHARES_FORWARDED
def test_major_downgrade_is_refused(forwarded):
    from cartrita_assets.errors import PreflightError
    from cartrita_assets.restore.steps import check_target

    resources = forwarded.resources
    assert forwarded.result.success
    folder = next(Path(resources["backups"].root).iterdir())
    manifest = Manifest.load(folder)
    manifest.postgres.major = 19  # as if v1 ran a newer PostgreSQL than v2

    with (
        connect(resources["v2"].admin(), role="test") as conn,
        pytest.raises(PreflightError) as err,
    ):
        check_target(conn, manifest)
    assert "older major" in str(err.value) and "19" in str(err.value)


def test_wrong_v1_password_is_a_clear_error_without_the_password(
    resources, instance, demo_v1, test_dir
):
    text = demo_v1.env_file.read_text()
    real = resources["v1"].settings().postgres.password
    bad = "Wr0ng-Pa55word-xyz"
    env_file = test_dir / "v1.env"
    env_file.write_text(text.replace(real, bad))

    resources = {**resources, "v1": v1_source(demo_v1, env_file)}
    result = run_job(resources, instance)

    assert not result.success
    message = " ".join(failure_messages(result))
    assert "password authentication failed" in message and "cartrita" in message
    assert bad not in message and real not in message
    assert bad not in event_log_text(instance, result.run_id)


def test_v1_password_never_leaks(resources, instance, capfd):
    password = resources["v1"].settings().postgres.password
    result = run_job(resources, instance)
    assert result.success

    assert password not in event_log_text(instance, result.run_id)
    out, err = capfd.readouterr()
    assert password not in out and password not in err
    folder = next(Path(resources["backups"].root).iterdir())
    for path in folder.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o077 == 0, path
        if path.is_file() and DUMP_NAME not in path.parts:
            assert password.encode() not in path.read_bytes(), path
    assert folder.stat().st_mode & 0o777 == 0o700
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "demo"


def test_second_concurrent_run_is_refused(resources, instance):
    import fcntl
    import os

    lock_path = Path(resources["migration_lock"].path)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"forward_migration_job run other-run, pid 1")
    fcntl.flock(
        fd, fcntl.LOCK_EX | fcntl.LOCK_NB
    )  # what a run in another process holds while it works
    try:
        result = run_job(resources, instance)
    finally:
        os.close(fd)

    assert not result.success
    assert materialized(result) == set()
    assert any(
        "Another migration run is in progress (forward_migration_job run other-run" in m
        for m in failure_messages(result)
    )
    assert run_job(resources, instance).success  # once released, the next run proceeds


def test_not_enough_disk_stops_before_writing(resources, instance):
    from cartrita_assets.backup.store import BackupStore

    store = BackupStore(root=resources["backups"].root, min_free_ratio=1e9)
    resources = {**resources, "backups": store}
    result = run_job(resources, instance)

    assert not result.success
    assert "Not enough free disk for the backup" in " ".join(failure_messages(result))
    root = Path(resources["backups"].root)
    assert not root.exists() or not any(root.iterdir())


def test_write_to_v1_after_backup_is_reported(resources, instance):
    v1 = resources["v1"].settings().postgres
    assert run_job(resources, instance).success
    with connect(v1, role="test") as conn:
        conn.execute("UPDATE public.users SET name = name || '?' WHERE id = 5")
    try:
        result = run_job(resources, instance, job="forward_migration_job")
        # the new run takes a new backup that includes the write: everything passes again
        assert all(check_results(result).values())
        checks_only = _checks_and_probe(resources, instance)
        assert check_results(checks_only, warnings=True)["v1_unchanged_since_backup"] is True
        with connect(v1, role="test") as conn:
            conn.execute("UPDATE public.users SET name = name || '?' WHERE id = 5")
        after_write = _checks_and_probe(resources, instance)
        assert check_results(after_write, warnings=True)["v1_unchanged_since_backup"] is False
        assert check_results(after_write)["content_hashes_match_v1"] is True
        assert "downstream_probe" in materialized(after_write)  # WARN: reported, not blocking
    finally:
        with connect(v1, role="test") as conn:
            conn.execute("UPDATE public.users SET name = rtrim(name, '?') WHERE id = 5")
