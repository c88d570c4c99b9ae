"""Faults in the middle of the forward path: each case ends with nothing lost (v1 equals its
manifest) and a re-run that reaches every check green with v2 equal to v1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.demo import v1_source
from support.faults import Watcher, crash_server, kill
from support.runs import check_results, failure_messages, run_job
from support.scratch import embedding_cache

from cartrita_assets.backup.manifest import Manifest
from cartrita_assets.cluster.v2 import LocalV2Target
from cartrita_assets.pg.connect import connect
from cartrita_assets.rollback.steps import backup_reference, compare_v1

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


def _resources(resources, demo):
    return {**resources, "v1": v1_source(demo)}


def _assert_nothing_lost(resources, instance) -> None:
    """v1 equals its last backup; a new forward run is all green with v2 equal to v1."""
    rerun = run_job(resources, instance)
    assert rerun.success, failure_messages(rerun)
    checks = check_results(rerun)
    assert checks and all(checks.values()), checks
    store = resources["backups"]
    latest = max(store.path().iterdir())
    assert (
        compare_v1(
            resources["v1"].settings(), backup_reference(latest, Manifest.load(latest))
        ).any()
        is False
    )


def _passwords(resources) -> list[str]:
    settings = resources["v1"].settings()
    v2_admin = resources["v2"].admin()
    return [settings.postgres.password, settings.redis.password, v2_admin.password]


def test_v2_killed_during_restore(resources, instance, own_v1):
    resources = _resources(resources, own_v1)
    resources["v2"].ensure_running(lambda _m: None)
    data_dir = Path(resources["v2"].base_dir) / "postgres" / "data"

    def kill_v2(_pid: int) -> None:
        crash_server(data_dir)

    # the restore itself (pg_restore --list, run by the backup's checks, only reads the dump)
    with Watcher(trigger="pg_restore --dbname=", action=kill_v2) as watcher:
        result = run_job(resources, instance)
    assert watcher.fired
    assert not result.success
    assert "restored_db" in " ".join(failure_messages(result)) or failure_messages(result)
    for line in watcher.seen:  # the audit: no password on any command line
        assert not any(p and p in line for p in _passwords(resources)), line
    _assert_nothing_lost(resources, instance)


def test_v1_stopped_during_dump(resources, instance, own_v1):
    resources = _resources(resources, own_v1)
    pg, _ = own_v1.servers()

    def stop_v1(_pid: int) -> None:
        crash_server(pg.data_dir)

    with Watcher(trigger="pg_dump --format=directory", action=stop_v1) as watcher:
        result = run_job(resources, instance)
    assert watcher.fired and not result.success
    message = " ".join(failure_messages(result))
    assert "pg_dump failed" in message or "Cannot connect to v1 PostgreSQL" in message, message
    backups = resources["backups"].path()
    assert not backups.exists() or not any(backups.iterdir())  # no half backup left behind
    own_v1.ensure()  # v1 comes back (crash recovery), untouched by the migration
    _assert_nothing_lost(resources, instance)


def _cli_env(resources, test_dir: Path, own_v1) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTRITA_")}
    env.update(
        CARTRITA_STATE_DIR=str(test_dir / "state"),
        CARTRITA_V1_ENV_FILE=str(own_v1.env_file),
        CARTRITA_V2_PG_PORT=str(resources["v2"].pg_port),
        CARTRITA_V2_REDIS_PORT=str(resources["v2"].redis_port),
        DAGSTER_HOME=str(test_dir / "home"),
        CARTRITA_EMBEDDING_CACHE=str(embedding_cache(test_dir.parent.parent)),
    )
    (test_dir / "home").mkdir(exist_ok=True)
    return env


def _cartrita(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    exe = str(Path(sys.executable).parent / "cartrita")
    return subprocess.Popen([exe, *args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_run_process_killed_between_assets_then_rerun(resources, own_v1, test_dir):
    env = _cli_env(resources, test_dir, own_v1)
    backups = test_dir / "state" / "backups"
    first = _cartrita(["forward", "--reports-dir", str(test_dir / "r")], env, test_dir)
    _wait_for(lambda: any(backups.glob("*/manifest.json")))  # v1_backup done, next asset starting
    kill(first.pid)
    first.wait(timeout=30)
    assert first.returncode == -9

    try:
        second = _cartrita(["forward", "--reports-dir", str(test_dir / "r")], env, test_dir)
        out, err = second.communicate(timeout=600)
        assert second.returncode == 0, out[-2000:] + err[-2000:]  # the lock died with the run
        assert "Result: SUCCESS" in out
        # a warning (vectors_are_well_formed: the demo holds degenerate vectors) does not fail it
        report = Path(out.split("Run summary written to ")[1].split()[0])
        summary = json.loads((report.parent / "summary.json").read_text())
        assert all(c["passed"] or c["severity"] == "WARN" for c in summary["checks"])
        ports = {"pg_port": resources["v2"].pg_port, "redis_port": resources["v2"].redis_port}
        v2 = LocalV2Target(base_dir=str(test_dir / "state" / "v2"), **ports)
        with connect(v2.admin("cartrita"), role="test") as conn:
            assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 20 * own_v1.scale
    finally:
        _cartrita(["servers", "stop"], env, test_dir).communicate(timeout=120)


@pytest.mark.parametrize("second_job", ["forward", "rollback"])
def test_second_migration_during_a_forward_run_is_refused(resources, own_v1, test_dir, second_job):
    env = _cli_env(resources, test_dir, own_v1)
    lock = test_dir / "state" / "locks" / "migration.lock"
    first = _cartrita(["forward", "--reports-dir", str(test_dir / "r")], env, test_dir)
    _wait_for(lambda: lock.exists() and lock.read_text().strip() != "")
    second = _cartrita([second_job, "--reports-dir", str(test_dir / "r2")], env, test_dir)
    out2, _ = second.communicate(timeout=600)
    out1, err1 = first.communicate(timeout=600)

    _cartrita(["servers", "stop"], env, test_dir).communicate(timeout=120)

    assert second.returncode == 1
    assert "Another migration run is in progress (forward_migration_job run" in out2
    assert first.returncode == 0, out1[-2000:] + err1[-2000:]
    assert "Result: SUCCESS" in out1
