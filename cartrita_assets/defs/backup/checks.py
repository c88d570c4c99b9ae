"""Checks that the backup is intact and holds what v1 held at the snapshot."""

import subprocess
from collections.abc import Iterator

import dagster as dg

from cartrita_assets.backup.manifest import DUMP_NAME, Manifest, verify_files_and_rows
from cartrita_assets.backup.store import BackupStore
from cartrita_assets.defs.backup.assets import v1_backup
from cartrita_assets.defs.common import current_backup
from cartrita_assets.pg.inventory import qualified
from cartrita_assets.pg.tools import TocEntry, read_toc


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "backup_is_restorable",
            asset=v1_backup,
            blocking=True,
            description="Every backup file matches its sha256 in the manifest and pg_restore can "
            "read the archive's table of contents, which lists the data of every table in the "
            "manifest.",
        ),
        dg.AssetCheckSpec(
            "backup_matches_v1_snapshot",
            asset=v1_backup,
            blocking=True,
            description="The dump holds exactly the rows v1 had at the snapshot: each table's data "
            "file has as many rows as the manifest counted server-side in the same snapshot.",
        ),
    ]
)
def backup_is_intact(
    context: dg.AssetCheckExecutionContext, backups: BackupStore
) -> Iterator[dg.AssetCheckResult]:
    """Both backup checks from one read of every file (its sha256 and its rows together, one
    thread per core) and one read of the archive's table of contents."""
    folder, manifest = current_backup(context, backups)
    problems, rows = verify_files_and_rows(folder, manifest)
    try:
        toc = read_toc(folder / DUMP_NAME)
    except subprocess.CalledProcessError as exc:
        problems.append(f"pg_restore --list failed: {exc.stderr.strip()[-300:]}")
        toc = []
    data = {qualified(e.schema, e.name) for e in toc if e.kind == "TABLE DATA"}
    missing = sorted(set(manifest.postgres.tables) - data) if toc else []
    problems += [f"no data entry for {name}" for name in missing]
    yield dg.AssetCheckResult(
        check_name="backup_is_restorable",
        passed=not problems,
        metadata={
            "backup_id": manifest.backup_id,
            "files_checked": len(manifest.postgres.files),
            "toc_entries": len(toc),
            "problems": len(problems),
            "details": "; ".join(problems[:20]) or "all files intact",
        },
    )
    mismatches = _row_mismatches(manifest, toc, rows)
    yield dg.AssetCheckResult(
        check_name="backup_matches_v1_snapshot",
        passed=not mismatches,
        metadata={
            "tables_compared": len(manifest.postgres.tables),
            "rows_in_snapshot": sum(t.rows for t in manifest.postgres.tables.values()),
            "mismatched_tables": len(mismatches),
            "details": "; ".join(mismatches[:20]) or "every table matches",
        },
    )


def _row_mismatches(manifest: Manifest, toc: list[TocEntry], rows: dict[str, int]) -> list[str]:
    """Tables whose data file (rows counted in the same read as its sha256) does not hold the
    snapshot's rows."""
    files = {
        qualified(e.schema, e.name): f"{DUMP_NAME}/{e.dump_id}.dat"
        for e in toc
        if e.kind == "TABLE DATA"
    }
    out = []
    for name, state in sorted(manifest.postgres.tables.items()):
        rel = files.get(name)
        if rel is None or rel not in rows:
            out.append(f"{name}: no data file")
            continue
        if rows[rel] != state.rows:
            out.append(f"{name}: dump has {rows[rel]} rows, snapshot had {state.rows}")
    return out
