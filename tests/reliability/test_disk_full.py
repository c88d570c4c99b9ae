"""The backup disk is really too small: a tmpfs of a few MiB as the BackupStore root.

Each case fails with a message that names the disk and the fix, leaves no backup folder behind,
v1 untouched, and ends with a re-run on a normal disk that reaches every check green.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.demo import v1_source
from support.nothing_lost import assert_nothing_lost, forward, v1_tables
from support.runs import failure_messages, materialized
from support.tmpfs import fill, mounted_tmpfs

from cartrita_assets.backup import snapshot as backup
from cartrita_assets.backup.store import BackupStore
from cartrita_assets.pg.connect import connect

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

MiB = 2**20
# The demo v1 at scale 1: database ~13 MiB, its uncompressed directory dump ~9 MiB (of which
# the two biggest table files ~5 and ~3 MiB). 4 MiB passes a 0.0001x preflight (a few KiB) and
# is full well before the dump ends; the re-run asserts the dump really was bigger.
MID_DUMP_DISK = 4 * MiB


@pytest.fixture
def setup(resources, own_v1, test_dir):
    """The test's own v1, and the folder a normal-size backup store uses for the re-run."""
    resources = {**resources, "v1": v1_source(own_v1)}
    return resources, test_dir


def _database_bytes(resources) -> int:
    with connect(resources["v1"].settings().postgres, role="test", read_only=True) as conn:
        return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def _v2_has_database(resources, name: str = "cartrita") -> bool:
    pg, _ = resources["v2"].servers()
    if not pg.is_running():
        return False
    with connect(resources["v2"].admin(), role="test") as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()


def _only_backup_failed(result) -> str:
    """The one failure message, from v1_backup; nothing downstream of it ran."""
    assert not result.success
    failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failed == ["v1_backup"], failed
    assert not {"v1_backup", "restored_db", "schema_version"} & materialized(result)
    (message,) = failure_messages(result)
    assert "Traceback" not in message and "Stack Trace" not in message, message
    return message


def _rerun_on_a_normal_disk(resources, instance, test_dir: Path) -> None:
    normal = {**resources, "backups": BackupStore(root=str(test_dir / "backups"))}
    assert_nothing_lost(normal, instance)


def test_disk_too_small_for_the_preflight_stops_before_writing(setup, instance):
    resources, test_dir = setup
    size = _database_bytes(resources) // 2  # the default preflight wants 2x the database
    with mounted_tmpfs(test_dir / "small-disk", size) as disk:
        store = BackupStore(root=str(disk / "backups"))  # default min_free_ratio 2.0
        result = forward({**resources, "backups": store}, instance)

        message = _only_backup_failed(result)
        assert f"Not enough free disk for the backup at {disk / 'backups'}" in message, message
        assert "set CARTRITA_BACKUP_DIR to a larger disk" in message
        assert list(disk.iterdir()) == []  # nothing was written there
    assert not _v2_has_database(resources)  # v2 untouched: nothing restored
    _rerun_on_a_normal_disk(resources, instance, test_dir)


def test_disk_fills_up_mid_dump_is_reported_and_cleaned_up(setup, instance):
    resources, test_dir = setup
    assert _database_bytes(resources) * 0.0001 < MID_DUMP_DISK  # the preflight will pass
    v1_before = v1_tables(resources)
    with mounted_tmpfs(test_dir / "small-disk", MID_DUMP_DISK) as disk:
        store = BackupStore(root=str(disk / "backups"), min_free_ratio=0.0001)
        result = forward({**resources, "backups": store}, instance)

        message = _only_backup_failed(result)
        assert "BackupDiskFullError: The backup disk is full: pg_dump could not write" in message
        assert "No space left on device" in message and str(disk / "backups") in message
        assert "set CARTRITA_BACKUP_DIR to a larger disk" in message
        assert list((disk / "backups").iterdir()) == []  # the partial backup is gone
    assert v1_tables(resources) == v1_before  # v1 untouched
    assert not _v2_has_database(resources)

    _rerun_on_a_normal_disk(resources, instance, test_dir)
    (folder,) = (test_dir / "backups").iterdir()
    dump_bytes = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert dump_bytes > 2 * MID_DUMP_DISK, dump_bytes  # the case really was "mid-dump"


def test_disk_fills_up_after_the_dump_is_reported_and_cleaned_up(setup, instance, monkeypatch):
    """Another process fills the disk right after the Redis keys are written (they are read
    beside pg_dump), then (second run) right after pg_dump and the Redis keys: the next file
    written (the rest of the dump or manifest.json, then manifest.json) gets a real ENOSPC."""
    resources, test_dir = setup
    v1_before = v1_tables(resources)
    with mounted_tmpfs(test_dir / "disk", 64 * MiB) as disk:
        store = BackupStore(root=str(disk / "backups"), min_free_ratio=1.0)
        for full_after, next_write in (("_backup_redis", "the dump or manifest.json"),
                                       ("_backup_postgres", "manifest.json")):  # fmt: skip
            step = getattr(backup, full_after)

            def then_fill_the_disk(*args, _step=step, **kwargs):
                out = _step(*args, **kwargs)
                assert fill(disk) > 0
                return out

            monkeypatch.setattr(backup, full_after, then_fill_the_disk)
            result = forward({**resources, "backups": store}, instance)
            monkeypatch.undo()
            (disk / "filler").unlink()

            message = _only_backup_failed(result)
            expected = "BackupDiskFullError: The backup disk is full: "
            assert expected in message, f"{next_write}: {message}"
            assert "No space left on device" in message and str(disk / "backups") in message
            assert list((disk / "backups").iterdir()) == []  # no folder without a manifest
    assert v1_tables(resources) == v1_before
    _rerun_on_a_normal_disk(resources, instance, test_dir)
