"""Checks that the backup is intact and holds what v1 held at the snapshot."""

import subprocess
from pathlib import Path

import dagster as dg

from cartrita_assets.backup.manifest import DUMP_NAME, Manifest, verify_files
from cartrita_assets.backup.store import BackupStore
from cartrita_assets.defs.backup.assets import v1_backup
from cartrita_assets.defs.common import current_backup
from cartrita_assets.pg.inventory import qualified
from cartrita_assets.pg.tools import count_copy_rows, read_toc


@dg.asset_check(asset=v1_backup, blocking=True)
def backup_is_restorable(
    context: dg.AssetCheckExecutionContext, backups: BackupStore
) -> dg.AssetCheckResult:
    """Every backup file matches its sha256 in the manifest and pg_restore can read the archive's
    table of contents, which lists the data of every table in the manifest."""
    folder, manifest = current_backup(context, backups)
    problems = verify_files(folder, manifest)
    try:
        toc = read_toc(folder / DUMP_NAME)
    except subprocess.CalledProcessError as exc:
        problems.append(f"pg_restore --list failed: {exc.stderr.strip()[-300:]}")
        toc = []
    data = {qualified(e.schema, e.name) for e in toc if e.kind == "TABLE DATA"}
    missing = sorted(set(manifest.postgres.tables) - data) if toc else []
    problems += [f"no data entry for {name}" for name in missing]
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "backup_id": manifest.backup_id,
            "files_checked": len(manifest.postgres.files),
            "toc_entries": len(toc),
            "problems": len(problems),
            "details": "; ".join(problems[:20]) or "all files intact",
        },
    )


@dg.asset_check(asset=v1_backup, blocking=True)
def backup_matches_v1_snapshot(
    context: dg.AssetCheckExecutionContext, backups: BackupStore
) -> dg.AssetCheckResult:
    """The dump holds exactly the rows v1 had at the snapshot: each table's data file has as many
    rows as the manifest counted server-side in the same snapshot."""
    folder, manifest = current_backup(context, backups)
    mismatches = _row_mismatches(folder, manifest)
    return dg.AssetCheckResult(
        passed=not mismatches,
        metadata={
            "tables_compared": len(manifest.postgres.tables),
            "rows_in_snapshot": sum(t.rows for t in manifest.postgres.tables.values()),
            "mismatched_tables": len(mismatches),
            "details": "; ".join(mismatches[:20]) or "every table matches",
        },
    )


def _row_mismatches(folder: Path, manifest: Manifest) -> list[str]:
    dump = folder / DUMP_NAME
    files = {
        qualified(e.schema, e.name): dump / f"{e.dump_id}.dat"
        for e in read_toc(dump)
        if e.kind == "TABLE DATA"
    }
    out = []
    for name, state in sorted(manifest.postgres.tables.items()):
        path = files.get(name)
        if path is None or not path.exists():
            out.append(f"{name}: no data file")
            continue
        found = count_copy_rows(path)
        if found != state.rows:
            out.append(f"{name}: dump has {found} rows, snapshot had {state.rows}")
    return out
