"""``cartrita db``: migration status and migrate against any DATABASE_URL (the guide's
``npm run db:status`` / ``db:migrate``)."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from cartrita_assets.envfile import EnvFile, PostgresSettings, V1Settings
from cartrita_assets.environments import bool_setting, current_environment, setting
from cartrita_assets.errors import CartritaError
from cartrita_assets.paths import data_path

if TYPE_CHECKING:  # imported where used: `cartrita` starts without loading the schema code
    from cartrita_assets.schema import MigrationRunner

COLUMNS = [
    "version",
    "name",
    "state",
    "applied_at",
    "duration_ms",
    "checksum",
    "applied_by",
    "forced",
]


def settings_from_url(url: str | None) -> PostgresSettings:
    """Connection settings from a DATABASE_URL, by the same rules as the v1 .env file."""
    if not url:
        raise CartritaError("Set DATABASE_URL (or pass --database-url) to the database to migrate.")
    env = EnvFile(source="DATABASE_URL", values={"DATABASE_URL": url}, lines={"DATABASE_URL": 1},
                  raw_bytes_sha256="")  # fmt: skip
    return V1Settings.from_env_file(env).postgres


def _runner(args: argparse.Namespace) -> MigrationRunner:
    from cartrita_assets.schema import MigrationRunner

    settings = settings_from_url(args.database_url or os.environ.get("DATABASE_URL"))
    return MigrationRunner(
        settings,
        data_path("sql") / "migrations",
        app_role=args.app_role or setting("CARTRITA_APP_ROLE") or settings.user,
        applied_by="cartrita db migrate",
        log=print,
        lock_timeout=args.lock_timeout,
        environment=current_environment(),
        allow_force_in_kubernetes=bool_setting("CARTRITA_ALLOW_FORCE_IN_KUBERNETES"),
    )


def print_table(rows: list[dict[str, object]], columns: list[str]) -> None:
    """A plain aligned text table."""
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


def status(args: argparse.Namespace) -> int:
    """Print every migration's state; exit 1 when the database drifted from the files."""
    runner = _runner(args)
    print(f"Database: {runner.settings.masked_dsn()}")
    rows = runner.status()
    print_table(rows, COLUMNS)
    applied = [str(r["version"]) for r in rows if r["applied_at"]]
    print(f"\nCurrent version: {max(applied) if applied else 'none'}; "
          f"pending: {sum(r['state'] == 'pending' for r in rows)}")  # fmt: skip
    drift = [r for r in rows if r["state"] not in ("applied", "pending")]
    return 1 if drift else 0


def migrate(args: argparse.Namespace) -> int:
    """Apply pending migrations (``FORCE_MIGRATION=true`` is the guide's name for --force)."""
    force = args.force or bool_setting("FORCE_MIGRATION")
    reason = args.reason or os.environ.get("FORCE_MIGRATION_REASON")
    runner = _runner(args)
    applied = runner.migrate(force=force, reason=reason)
    print(
        f"Applied {len(applied)} migration(s)"
        + (": " + ", ".join(m.filename for m in applied) if applied else "")
    )
    return 0


def manifest(args: argparse.Namespace) -> int:
    """Check (or with --write regenerate) sql/MIGRATION_MANIFEST.json."""
    from cartrita_assets.schema import manifest_problems, write_manifest
    from cartrita_assets.schema.files import load_migrations

    folder = data_path("sql") / "migrations"
    if args.write:
        print(f"Wrote {write_manifest(folder)}")
        return 0
    problems = manifest_problems(folder, load_migrations(folder))
    for problem in problems:
        print(problem)
    print("MIGRATION_MANIFEST.json matches the files" if not problems else "")
    return 1 if problems else 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``cartrita db ...``."""
    db = sub.add_parser("db", help="schema migrations: status, migrate, manifest")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    for name, func, helptext in (
        ("status", status, "each migration: state, applied_at, duration, checksum"),
        ("migrate", migrate, "apply pending migrations in order"),
    ):
        cmd = db_sub.add_parser(name, help=helptext)
        cmd.add_argument("--database-url", help="default: $DATABASE_URL")
        cmd.add_argument(
            "--app-role", help="role the migrations grant to (default: the URL's user)"
        )
        cmd.add_argument(
            "--lock-timeout", type=float, default=60.0, help="seconds to wait for another runner"
        )
        cmd.set_defaults(func=func)
    mig = db_sub.choices["migrate"]
    mig.add_argument(
        "--force", action="store_true", help="accept edited applied migrations (needs --reason)"
    )
    mig.add_argument("--reason", help="why forcing is right; recorded in schema_migrations")
    man = db_sub.add_parser("manifest", help="check or regenerate sql/MIGRATION_MANIFEST.json")
    man.add_argument("--write", action="store_true")
    man.set_defaults(func=manifest)
