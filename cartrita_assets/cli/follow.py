"""``cartrita follow status|abort`` and ``cartrita cutover``."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _status(_args: argparse.Namespace) -> int:
    from cartrita_assets.environments import build_resources
    from cartrita_assets.follow import ledger as ledgers

    follow = build_resources()["follow"]
    ledger = ledgers.load(follow.path())
    if ledger is None:
        print("Follow mode: off (nothing of it exists on v1 or v2)")
        return 0
    print(f"Follow mode: {ledger.state} (backup {ledger.backup_id or 'not taken yet'})")
    print(f"Ledger: {ledgers.ledger_path(follow.path()).resolve()}")
    for line in ledger.v1_objects():
        print(f"on v1: {line}")
    if ledger.subscription:
        print(f"on v2: subscription {ledger.subscription} in database {ledger.v2_database}")
    if ledger.redis_replica:
        print("on v2: Redis REPLICAOF v1")
    return 0


def _abort(_args: argparse.Namespace) -> int:
    from cartrita_assets.environments import build_resources
    from cartrita_assets.follow import ledger as ledgers
    from cartrita_assets.follow import steps

    resources = build_resources()
    v1, v2, follow = resources["v1"], resources["v2"], resources["follow"]
    if ledgers.load(follow.path()) is None:
        print("Follow mode left nothing to remove")
        return 0
    settings = v1.settings(start_demo=False)
    removed = steps.abort(
        settings, follow.path(), print, v2_admin=v2.admin,
        v2_redis=lambda: v2.redis() if settings.redis else None,
    )  # fmt: skip
    print(f"Follow mode aborted: {len(removed)} objects removed; v1 takes writes again")
    return 0


def add_parser(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    job_parser: Callable[..., argparse.ArgumentParser],
    run_job: Callable[[argparse.Namespace], int],
) -> None:
    """``follow`` (status, abort) and ``cutover`` (runs cutover_job)."""
    cmd = sub.add_parser("follow", help="what follow mode created on v1/v2, or remove it all")
    cmd.add_argument("action", choices=["status", "abort"])
    cmd.add_argument("--env-file", help="v1's .env (default: ./.env, else the demo v1)")
    cmd.set_defaults(func=lambda a: _abort(a) if a.action == "abort" else _status(a))
    job_parser(sub, "cutover", "run cutover_job: switch the application to v2 in seconds", run_job)
