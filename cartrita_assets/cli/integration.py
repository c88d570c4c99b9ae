"""``cartrita test integration``: the integration suite against v2, from a shell."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    test = sub.add_parser("test", help="run the integration suite against v2")
    test.add_argument("suite", choices=["integration"])
    test.add_argument("--database", help="v2 database (default: the one restored_db wrote)")
    test.add_argument(
        "--reports-dir",
        default=None,
        help="where the report goes ($CARTRITA_REPORTS_DIR, ./reports)",
    )
    test.set_defaults(func=run)


def _database(v1_dbname: str) -> str:
    """The database restored_db last wrote in this instance, else v1's database name."""
    import dagster as dg

    from cartrita_assets.defs.facts import restored_database
    from cartrita_assets.environments import state_dir
    from cartrita_assets.instance import ensure_dagster_home

    ensure_dagster_home(state_dir())
    return restored_database(dg.DagsterInstance.get()) or v1_dbname


def run(args: argparse.Namespace) -> int:
    from cartrita_assets.environments import build_resources, reports_dir
    from cartrita_assets.paths import data_path
    from cartrita_assets.redis_copy.client import client_for
    from cartrita_assets.report.report import markdown, new_report_dir, write_report
    from cartrita_assets.report.suite import run_suite

    resources = build_resources()
    v1, v2 = resources["v1"], resources["v2"]
    app = v1.settings(print).postgres
    database = args.database or _database(app.dbname)
    admin = v2.admin(database)
    ping = client_for(v2.redis()).ping
    result = run_suite(
        admin,
        redis_ping=lambda: bool(ping()),
        migrations=data_path("sql") / "migrations",
        log=print,
        app=replace(admin, user=app.user, password=app.password),
    )
    root = Path(args.reports_dir or reports_dir())
    folder = new_report_dir(root, "cli-test")
    about = {"database": database, "v2": admin.masked_dsn(), "run_id": "cartrita test integration"}
    paths = write_report(folder, result, about)
    print()
    print(markdown(result, about))
    print(f"Integration report written to {paths['markdown'].resolve()}")
    return 0 if result.passed else 1
