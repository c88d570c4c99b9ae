"""sql/migrations and the runner on a real PostgreSQL: apply, drift, force, lock, failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.runs import check_results, failure_messages, run_job

from cartrita_assets.errors import ChecksumMismatch, MigrationError, MigrationLockTimeout
from cartrita_assets.paths import data_path
from cartrita_assets.pg.connect import connect
from cartrita_assets.schema import MigrationRunner, load_migrations

pytestmark = pytest.mark.integration

SQL = data_path("sql") / "migrations"


@pytest.fixture
def database(v2):
    """A fresh empty database on the test's own server."""
    v2.ensure_running(lambda _m: None)
    with connect(v2.admin(), role="test") as conn:
        conn.execute("CREATE DATABASE mig")
        conn.execute("CREATE ROLE app_user LOGIN")
    return v2.admin("mig")


@pytest.fixture
def folder(test_dir) -> Path:
    """A copy of sql/migrations the test may edit."""
    target = test_dir / "migrations"
    shutil.copytree(SQL, target)
    return target


def _runner(settings, folder, **kwargs) -> MigrationRunner:
    return MigrationRunner(settings, folder, app_role="app_user", **kwargs)


def _history(settings) -> list[tuple]:
    with connect(settings, role="test") as conn:
        return conn.execute(
            "SELECT version, success, error, forced_reason FROM schema_migrations ORDER BY id"
        ).fetchall()


def test_empty_database_gets_everything_once(database, folder):
    runner = _runner(database, folder)
    applied = runner.migrate()
    assert [m.version for m in applied] == [m.version for m in load_migrations(folder)]
    assert runner.migrate() == []
    assert [r["state"] for r in runner.status()] == ["applied"] * len(applied)
    with connect(database, role="test") as conn:
        grants = conn.execute(
            "SELECT privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee = 'app_user' AND table_name = 'embeddings' ORDER BY 1"
        ).fetchall()
        assert [g[0] for g in grants] == ["DELETE", "INSERT", "SELECT", "UPDATE"]
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(applied)


def test_restored_demo_v1_gets_the_schema_and_every_check_passes(resources, instance):
    first = run_job(resources, instance)
    assert first.success, failure_messages(first)
    checks = check_results(first)
    for name in ("migration_checksums_match", "all_migrations_applied", "guide_objects_exist"):
        assert checks[name] is True, name
    second = run_job(resources, instance)
    assert second.success
    meta = [
        e.event_specific_data.materialization.metadata
        for e in second.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
        and e.event_specific_data.materialization.asset_key.to_user_string() == "schema_version"
    ][0]
    assert meta["applied_now"].value == "nothing pending" or meta["applied_count"].value == len(
        load_migrations(SQL)
    )  # a replaced database is new, so it gets every migration again
    with connect(resources["v2"].admin("cartrita"), role="test") as conn:
        # v1's own tables and the v2 schema live side by side
        assert conn.execute("SELECT count(*) FROM knowledge_entries").fetchone()[0] > 0
        assert conn.execute(
            "SELECT to_regprocedure('hybrid_search(text,vector,double precision,"
            "double precision,double precision,integer,text,text,boolean)')"
        ).fetchone()[0]


def test_edited_migration_stops_with_file_and_both_hashes(database, folder):
    _runner(database, folder).migrate()
    edited = folder / "0004_create_search_metrics.sql"
    old = load_migrations(folder)[3].checksum
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")
    new = load_migrations(folder)[3].checksum

    with pytest.raises(ChecksumMismatch) as err:
        _runner(database, folder).migrate()
    assert edited.name in str(err.value) and old in str(err.value) and new in str(err.value)

    with pytest.raises(MigrationError, match="Force needs a reason"):
        _runner(database, folder).migrate(force=True)
    with pytest.raises(MigrationError, match="refused in the kubernetes environment"):
        _runner(database, folder, environment="kubernetes").migrate(force=True, reason="hotfix")

    _runner(database, folder).migrate(force=True, reason="comment-only change, reviewed")
    forced = [row for row in _history(database) if row[0] == "0004"]
    assert (
        len(forced) == 1 and "comment-only change, reviewed" in forced[0][3] and old in forced[0][3]
    )
    assert _runner(database, folder).migrate() == []  # accepted: no longer a mismatch


def test_line_endings_and_bom_do_not_change_the_checksum(database, folder):
    _runner(database, folder).migrate()
    path = folder / "0002_enable_vector.sql"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert _runner(database, folder).migrate() == []


def _slow_migration(folder: Path, seconds: float) -> None:
    (folder / "0099_wait_a_little.sql").write_text(
        f"-- description: Hold the lock for a moment\n-- depends:\nSELECT pg_sleep({seconds});\n"
    )


def test_second_runner_waits_then_reports_the_lock(database, folder):
    _slow_migration(folder, 3)
    outcome: dict[str, object] = {}

    def first() -> None:
        outcome["first"] = _runner(database, folder).migrate()

    thread = threading.Thread(target=first)
    thread.start()
    with connect(database, role="test") as conn:  # wait until the first runner holds the lock
        while not conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        ).fetchone()[0]:
            pass
    with pytest.raises(MigrationLockTimeout, match="holds the migration lock after 1s"):
        _runner(database, folder, lock_timeout=1).migrate()
    patient = _runner(database, folder, lock_timeout=30).migrate()  # waits, then finds nothing
    thread.join()

    assert len(outcome["first"]) == len(load_migrations(folder))  # type: ignore[arg-type]
    assert patient == []
    versions = [row[0] for row in _history(database)]
    assert len(versions) == len(set(versions))  # nothing applied twice


def test_failing_migration_leaves_nothing_and_is_recorded(database, folder):
    broken = folder / "0099_create_half_done.sql"
    broken.write_text(
        "-- description: Create a table, then fail\n-- depends:\n"
        "CREATE TABLE half_done (id int);\nSELECT no_such_function();\n"
    )
    with pytest.raises(
        MigrationError, match="0099_create_half_done.sql failed.*none of it was applied"
    ):
        _runner(database, folder).migrate()
    with connect(database, role="test") as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone()[0] is None
    failed = [row for row in _history(database) if row[0] == "0099"]
    assert len(failed) == 1 and failed[0][1] is False and "no_such_function" in failed[0][2]
    assert [r["state"] for r in _runner(database, folder).status()][-1] == "failed (last attempt)"

    broken.write_text(broken.read_text().replace("SELECT no_such_function();", "SELECT 1;"))
    assert [m.version for m in _runner(database, folder).migrate()] == ["0099"]
    with connect(database, role="test") as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone()[0] is not None


def test_database_newer_than_the_files_is_a_downgrade(database, folder):
    _slow_migration(folder, 0)
    _runner(database, folder).migrate()
    (folder / "0099_wait_a_little.sql").unlink()
    with pytest.raises(MigrationError, match="0099 that are not in .*a downgrade"):
        _runner(database, folder).migrate()


def test_cli_db_status_and_migrate(database, test_dir):
    url = f"postgresql://{database.user}:{database.password}@{database.host}:{database.port}/mig"
    env = {**os.environ, "DATABASE_URL": url}
    cli = str(Path(sys.executable).parent / "cartrita")
    migrate = subprocess.run(
        [cli, "db", "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr
    assert f"Applied {len(load_migrations(SQL))} migration(s)" in migrate.stdout
    status = subprocess.run(
        [cli, "db", "status"], env=env, capture_output=True, text=True, timeout=120
    )
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[1].split() == [
        "version",
        "name",
        "state",
        "applied_at",
        "duration_ms",
        "checksum",
        "applied_by",
        "forced",
    ]
    assert (
        lines[3].startswith("0001")
        and "create_schema_migrations" in lines[3]
        and "applied" in lines[3]
    )
    assert load_migrations(SQL)[0].checksum[:12] in lines[3]
    assert f"Current version: {load_migrations(SQL)[-1].version}; pending: 0" in status.stdout
    assert database.password not in status.stdout + migrate.stdout + migrate.stderr
    force = subprocess.run([cli, "db", "migrate"], env={**env, "FORCE_MIGRATION": "true"},
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert force.returncode == 2 and "Force needs a reason" in force.stderr


def test_rebuild_and_search_functions_work_as_the_guide_calls_them(database, folder):
    _runner(database, folder).migrate()
    with connect(database, role="test") as conn:
        vec = "[" + ",".join(["0.1"] * 1536) + "]"
        other = "[" + ",".join(["0.1"] * 1535 + ["0.9"]) + "]"
        conn.execute(
            "SELECT * FROM upsert_embedding('knowledge_entries', '1', "
            "'artificial intelligence notes', %s::vector, 'text-embedding-3-small')",
            (vec,),
        )
        conn.execute(
            "SELECT * FROM upsert_embedding('journal_entries', "
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'gardening diary', %s::vector, "
            "'text-embedding-3-small')",
            (other,),
        )
        again = conn.execute(
            "SELECT action FROM upsert_embedding('knowledge_entries', '1', "
            "'artificial   intelligence notes ', %s::vector, 'text-embedding-3-small')",
            (vec,),
        ).fetchone()[0]
        assert again == "unchanged"  # whitespace-normalised text, same model: same hash
        rows = conn.execute(
            f"SELECT source_id FROM hybrid_search('artificial intelligence', "
            f"'{vec}'::vector(1536), 0.7, 0.3, 0.8, 10)"
        ).fetchall()
        assert rows[0][0] == "1"
        assert conn.execute("SELECT count(*) FROM rebuild_vector_indexes()").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 2


def test_runner_finds_sql_in_an_installed_wheel(test_dir):
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(test_dir / "wheel"), str(root)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    wheel = next((test_dir / "wheel").glob("*.whl"))
    target = test_dir / "site"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
    subprocess.run([*install, str(wheel)], check=True, capture_output=True, timeout=300)
    code = (
        "from cartrita_assets.paths import data_path; from cartrita_assets.schema import "
        "load_migrations; p = data_path('sql'); print(p); "
        "print(len(load_migrations(p / 'migrations'))); print((data_path('k8s') / "
        "'job-db-migrate.yaml').exists())"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=test_dir, timeout=120)  # fmt: skip
    path, count, k8s = res.stdout.split()
    assert path.startswith(str(target)) and path.endswith("_data/sql")
    assert int(count) == len(load_migrations(SQL)) and k8s == "True"
