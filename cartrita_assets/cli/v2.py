"""``cartrita v2``: the guide's ``v2:status``, ``v2:logs`` and ``v2:connect``."""

from __future__ import annotations

import argparse

from cartrita_assets.envfile.cutover import cutover_file
from cartrita_assets.environments import build_resources


def status(_args: argparse.Namespace) -> int:
    """Print the local servers (the pooler and read replica too), or the namespace's pods,
    services and volume claims."""
    resources = build_resources()
    for line in resources["v2"].status_lines() + resources["serving"].status_lines(resources["v2"]):
        print(line)
    return 0


def logs(args: argparse.Namespace) -> int:
    """Print the tail of the PostgreSQL or Redis log."""
    print(build_resources()["v2"].logs(args.component, args.lines))
    return 0


def connect_info(_args: argparse.Namespace) -> int:
    """Print how the application reaches v2 (masked) and where .env.v2 is."""
    resources = build_resources()
    v1, v2 = resources["v1"], resources["v2"]
    settings = v1.settings(start_demo=False)  # a command that only looks starts nothing
    pg, rds = v2.app_endpoints()
    dsn = settings.postgres.masked_dsn().replace(
        f"@{settings.postgres.host}:{settings.postgres.port}/", f"@{pg.host}:{pg.port}/"
    )
    print(f"PostgreSQL: {dsn}")
    print(f"Redis:      {rds.host}:{rds.port} (its password is in .env.v2)")
    env_path = v1.env_path(start_demo=False)
    print(f"The full settings, passwords included (0600): {cutover_file(env_path, 'v2')}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``cartrita v2 ...``."""
    v2 = sub.add_parser("v2", help="v2 status, logs and connection details")
    v2_sub = v2.add_subparsers(dest="v2_command", required=True)
    v2_sub.add_parser("status", help="servers, or pods/services/volume claims").set_defaults(
        func=status
    )
    log = v2_sub.add_parser("logs", help="tail of the PostgreSQL or Redis log")
    log.add_argument("component", choices=["postgres", "redis"])
    log.add_argument("--lines", type=int, default=100)
    log.set_defaults(func=logs)
    v2_sub.add_parser("connect", help="how the application reaches v2").set_defaults(
        func=connect_info
    )
