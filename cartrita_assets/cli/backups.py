"""``cartrita backups``: v2's backups from a shell: list them, restore-test one, restore one."""

from __future__ import annotations

import argparse

from cartrita_assets.environments import build_resources
from cartrita_assets.errors import CartritaError

STATES = {True: "verified", False: "FAILED", None: "not tested"}


def list_backups(_args: argparse.Namespace) -> int:
    """Print every v2 backup, newest first, with its size and restore-test state."""
    store = build_resources()["v2_backups"]
    entries = store.entries()
    print(f"v2 backups in {store.path()} (keep {store.keep}, max age {store.max_age_days} days):")
    if not entries:
        print("  none yet: materialize v2_backup (or wait for v2_backup_schedule)")
    for entry in entries:
        created = entry.created_at.isoformat(timespec="seconds")
        size = f"{entry.bytes / 2**20:.1f} MiB"
        print(f"  {entry.backup_id}  {created}  {size:>10}  {STATES[entry.verified]}")
    return 0


def verify(args: argparse.Namespace) -> int:
    """Restore a backup (default: the newest) into a scratch database on v2's server and compare
    it with its manifest; exit 1 when it does not match."""
    from cartrita_assets.backup.retention import record_verification
    from cartrita_assets.restore.scratch import run_restore_test

    resources = build_resources()
    store, v2 = resources["v2_backups"], resources["v2"]
    folder, manifest = store.load(args.backup_id) if args.backup_id else store.newest()
    test = run_restore_test(v2.admin(), folder, manifest, print, store.dump_jobs)
    details = "; ".join(test.problems[:20]) or "restored and matched"
    record_verification(folder, test.passed, details)
    if not test.passed:
        print(f"FAILED: v2 backup {manifest.backup_id} does not restore to its manifest: {details}")
        return 1
    print(f"OK: v2 backup {manifest.backup_id} restored into a scratch database and matched its "
          f"manifest ({test.tables} tables, {test.rows} rows, {test.sequences} sequences, "
          f"{test.redis_keys} Redis keys) in {test.seconds:.1f}s")  # fmt: skip
    return 0


def restore(args: argparse.Namespace) -> int:
    """Put v2 back to a backup: its database replaced, the backed-up Redis keys rewritten."""
    from cartrita_assets.restore.steps import restore_postgres, restore_redis, verify_backup

    resources = build_resources()
    store, v2 = resources["v2_backups"], resources["v2"]
    folder, manifest = store.load(args.backup_id)
    database = manifest.postgres.database
    if not args.yes_replace_v2:
        raise CartritaError(
            f"Restoring v2 backup {manifest.backup_id} replaces v2's database '{database}' and "
            f"rewrites the Redis keys it holds: what v2 took since {manifest.created_at} is lost. "
            "Nothing was changed. Re-run with --yes-replace-v2 to confirm."
        )
    verify_backup(folder, manifest, asset="v2_backup")
    outcome = restore_postgres(
        v2.admin(), folder, manifest, None,
        log=print, replace_existing=True, jobs=store.dump_jobs, again=True,
    )  # fmt: skip
    print(f"v2 database {database}: {outcome.action} from {manifest.backup_id}")
    if manifest.redis is not None:
        restore_redis(v2.redis(), folder, print, "auto", manifest.redis.server_version)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``cartrita backups ...``."""
    backups = sub.add_parser("backups", help="v2's backups: list, verify, restore")
    cmds = backups.add_subparsers(dest="backups_command", required=True)
    cmds.add_parser("list", help="every v2 backup, newest first").set_defaults(func=list_backups)
    check = cmds.add_parser(
        "verify", help="restore a backup into a scratch database and compare it with its manifest"
    )
    check.add_argument("--from", dest="backup_id", help="the backup id (default: the newest)")
    check.set_defaults(func=verify)
    back = cmds.add_parser("restore", help="replace v2's database and Redis keys by a backup")
    back.add_argument("--from", dest="backup_id", required=True, help="the backup id")
    back.add_argument(
        "--yes-replace-v2", action="store_true", help="confirm that v2's current data is replaced"
    )
    back.set_defaults(func=restore)
