"""v2's scheduled backups on real servers: written, restore-tested, pruned only after a newer one
verified; a tampered backup fails its test; the CLI lists, verifies and refuses to overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from support.runs import check_results, materialize, run_job

from cartrita_assets.backup.manifest import DUMP_NAME, Manifest, sha256_file
from cartrita_assets.backup.retention import verification
from cartrita_assets.backup.v2_store import V2BackupStore
from cartrita_assets.cli.main import main as cartrita
from cartrita_assets.definitions import build_definitions
from cartrita_assets.pg import inventory
from cartrita_assets.pg.connect import connect

pytestmark = pytest.mark.integration

RESTORE = ("v1_backup", "k8s_secrets", "pgvector_cluster", "restored_db")


def _scheduled_backup(resources: dict, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """What the daemon does on a tick: evaluate v2_backup_schedule, run what it requests."""
    schedule = build_definitions(resources).resolve_schedule_def("v2_backup_schedule")
    with dg.build_schedule_context(instance=instance) as context:
        requests = schedule.evaluate_tick(context).run_requests
    assert requests and requests[0].tags["cartrita/database"] == "cartrita"
    return run_job(resources, instance, "v2_backup_job")


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return check_results(result, warnings=True)


def _metadata(result: dg.ExecuteInProcessResult, check: str) -> dict[str, object]:
    for event in result.all_events:
        data = event.event_specific_data
        if event.event_type_value == "ASSET_CHECK_EVALUATION" and data.check_name == check:  # type: ignore[union-attr]
            return {k: v.value for k, v in data.metadata.items()}  # type: ignore[union-attr]
    raise AssertionError(f"{check} was not evaluated")


def _scratch_databases(v2) -> list[str]:
    with connect(v2.admin(), role="test") as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'cartrita_restore_test_%'"
        ).fetchall()
    return [r[0] for r in rows]


def _tamper_one_value(folder: Path) -> None:
    """Change one character of one row in the dump, and re-seal the manifest's sha256 so only
    the restore test (not the file checksums) can notice."""
    manifest = Manifest.load(folder)
    dump = folder / DUMP_NAME
    path = max(dump.glob("*.dat"), key=lambda p: p.stat().st_size)
    text = path.read_text()
    first_row = text.split("\n", 1)[0]
    at = next(i for i, ch in enumerate(first_row) if ch.isalpha() and ch.lower() != "z")
    path.write_text(text[:at] + chr(ord(text[at]) + 1) + text[at + 1 :])
    manifest.postgres.files[str(path.relative_to(folder))] = sha256_file(path)
    manifest.save(folder)


def test_scheduled_backup_verified_then_old_one_pruned_and_tamper_fails(
    resources, disk_instance, v2, test_dir, monkeypatch
):
    instance = disk_instance  # a schedule's context needs an instance that has a reference
    assert materialize(resources, instance, *RESTORE).success
    store = V2BackupStore(root=str(test_dir / "v2-backups"), keep=1, max_age_days=0)
    resources = {**resources, "v2_backups": store}

    # 1. the first scheduled backup: written, restore-tested, nothing to prune
    first = _scheduled_backup(resources, instance)
    assert first.success and _checks(first) == {"v2_backup_restores": True,
                                                "v2_backup_retention": True}  # fmt: skip
    (a,) = [e.backup_id for e in store.entries()]
    assert verification(store.path() / a) is True
    folder_a, manifest_a = store.load(a)
    with connect(v2.admin("cartrita"), role="test") as conn:
        live = inventory.table_states(conn)
    assert {k: live[k] for k in manifest_a.postgres.tables} == manifest_a.postgres.tables
    assert (folder_a / "redis.jsonl").exists() and manifest_a.redis is not None
    assert sum(manifest_a.redis.keys_per_db.values()) > 0
    assert _scratch_databases(v2) == []  # the scratch database is dropped after
    assert _metadata(first, "v2_backup_restores")["rows_restored"] == sum(
        t.rows for t in manifest_a.postgres.tables.values()
    )

    # 2. v2 takes a write; the next backup is tampered with after it was taken: its restore test
    # fails (blocking), and the older backup stays although keep=1 (it is the newest verified)
    with connect(v2.admin("cartrita"), role="test") as conn:
        conn.execute(
            "UPDATE users SET name = name || ' (v2)' WHERE id = (SELECT min(id) FROM users)"
        )
    import cartrita_assets.defs.v2_operations.assets as assets_module

    real = assets_module.take_origin_backup

    def then_tamper(*args, **kwargs):
        folder, manifest = real(*args, **kwargs)
        _tamper_one_value(folder)
        return folder, Manifest.load(folder)

    monkeypatch.setattr(assets_module, "take_origin_backup", then_tamper)
    second = _scheduled_backup(resources, instance)
    monkeypatch.undo()
    assert _checks(second) == {"v2_backup_restores": False, "v2_backup_retention": False}
    details = str(_metadata(second, "v2_backup_restores")["details"])
    assert "manifest" in details and "restored" in details, details
    ids = [e.backup_id for e in store.entries()]
    assert len(ids) == 2 and ids[1] == a
    assert verification(store.path() / ids[0]) is False
    assert _metadata(second, "v2_backup_retention")["removed"] == "none"
    assert _scratch_databases(v2) == []

    # 3. a good backup: verified, then both older ones go (keep=1)
    third = _scheduled_backup(resources, instance)
    assert third.success and _checks(third) == {"v2_backup_restores": True,
                                                "v2_backup_retention": True}  # fmt: skip
    (c,) = [e.backup_id for e in store.entries()]
    assert c not in ids and not (store.path() / a).exists()
    assert _metadata(third, "v2_backup_retention")["removed_count"] == 2
    _, manifest_c = store.load(c)
    assert manifest_c.postgres.tables != manifest_a.postgres.tables  # it holds v2's write
    assert manifest_c.source["kind"] == "v2"


def test_backups_cli_lists_verifies_and_refuses_to_replace_v2_unconfirmed(
    resources, instance, v2, test_dir, base_dir, monkeypatch, capsys
):
    assert materialize(resources, instance, *RESTORE).success
    assert run_job(resources, instance, "v2_backup_job").success
    store: V2BackupStore = resources["v2_backups"]
    (backup_id,) = [e.backup_id for e in store.entries()]
    pg, rds = v2.servers()
    for name, value in (("CARTRITA_STATE_DIR", str(base_dir)),  # the session's v2 is <base>/v2
                        ("CARTRITA_V2_PG_PORT", str(pg.port)),
                        ("CARTRITA_V2_REDIS_PORT", str(rds.port)),
                        ("CARTRITA_V2_BACKUP_DIR", str(store.path()))):  # fmt: skip
        monkeypatch.setenv(name, value)
    assert Path(v2.base_dir) == base_dir / "v2"

    assert cartrita(["backups", "list"]) == 0
    assert f"{backup_id}" in capsys.readouterr().out

    # restore without confirmation: one clear error, v2 unchanged
    with connect(v2.admin("cartrita"), role="test") as conn:
        conn.execute("DELETE FROM conversation_messages")
        before = inventory.table_states(conn)
    assert cartrita(["backups", "restore", "--from", backup_id]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "--yes-replace-v2" in err and "'cartrita'" in err
    assert "v1" not in err
    with connect(v2.admin("cartrita"), role="test") as conn:
        assert inventory.table_states(conn) == before
    assert cartrita(["backups", "restore", "--from", "no_such_backup"]) == 2
    assert "There is no v2 backup 'no_such_backup'" in capsys.readouterr().err

    # confirmed: v2 is the backup again
    assert cartrita(["backups", "restore", "--from", backup_id, "--yes-replace-v2"]) == 0
    _, manifest = store.load(backup_id)
    with connect(v2.admin("cartrita"), role="test") as conn:
        after = inventory.table_states(conn)
    assert {k: after[k] for k in manifest.postgres.tables} == manifest.postgres.tables

    # verify: passes, then a byte changed in a dump file fails it, naming the file
    assert cartrita(["backups", "verify"]) == 0
    assert "OK: v2 backup" in capsys.readouterr().out
    data = next((store.path() / backup_id / DUMP_NAME).glob("*.dat"))
    data.write_bytes(data.read_bytes() + b"\n")
    assert cartrita(["backups", "verify", "--from", backup_id]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and data.name in out and "sha256" in out
    record = json.loads((store.path() / backup_id / "verified.json").read_text())
    assert record["passed"] is False
