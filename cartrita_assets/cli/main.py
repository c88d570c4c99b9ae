"""``cartrita``: run the migration, and look after the local servers, from a shell."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cartrita_assets.cli import backups as cli_backups
from cartrita_assets.cli import db as cli_db
from cartrita_assets.cli import follow as cli_follow
from cartrita_assets.cli import integration as cli_test
from cartrita_assets.cli import v2 as cli_v2
from cartrita_assets.errors import CartritaError
from cartrita_assets.instance import ensure_dagster_home
from cartrita_assets.paths import PROJECT_ROOT

if TYPE_CHECKING:
    from cartrita_assets.cluster.v2 import V2Target
    from cartrita_assets.resources.serving import ServingResource


def _run_job(
    name: str, run_config: dict[str, object], reports_dir: str | None, verbose: bool = False
) -> int:
    import dagster as dg

    from cartrita_assets import environments
    from cartrita_assets.cli.summary import RunSummary
    from cartrita_assets.definitions import build_definitions
    from cartrita_assets.resources.lock import release_run_lock

    ensure_dagster_home(environments.state_dir())
    reports_dir = reports_dir or environments.reports_dir()
    os.environ["CARTRITA_REPORTS_DIR"] = reports_dir  # integration_report writes there too
    job = build_definitions().resolve_job_def(name)
    result = job.execute_in_process(
        instance=dg.DagsterInstance.get(),
        run_config={**run_config, "loggers": console_logger_config(verbose)},
        raise_on_error=False,
    )
    release_run_lock(result.run_id)
    summary = RunSummary.from_result(result)
    report = summary.write(Path(reports_dir))
    print(summary.markdown())
    print(f"Run summary written to {report.resolve()}")
    for path in _integration_reports(result):
        print(f"Integration report: {path}")
    print("Browse the run and the asset graph with: cartrita dev")
    return 0 if result.success else 1


def console_logger_config(verbose: bool) -> dict[str, object]:
    """The terminal shows the assets' progress lines (INFO and up); the engine's step events are
    DEBUG and appear only with ``--verbose``. The run's event log keeps everything either way."""
    return {"console": {"config": {"log_level": "DEBUG" if verbose else "INFO"}}}


def _integration_reports(result: object) -> list[str]:
    """report.md paths of integration_report materializations in the run."""
    paths = []
    for event in result.all_events:  # type: ignore[attr-defined]
        if event.event_type_value == "ASSET_MATERIALIZATION":
            meta = event.event_specific_data.materialization.metadata
            if "report_md" in meta:
                paths.append(str(meta["report_md"].value))
    return paths


def _check_v1_env_file() -> None:
    """Read v1's .env before a job starts: a bad file is one clear error, not a failed run.

    The file is found and read before Dagster is imported, so a bad one fails in a fraction of a
    second; then the other settings are read as the run will read them. Nothing is started or
    written (the demo v1 is not started here); the assets read the file again.
    """
    from cartrita_assets.envfile import V1Settings, read_env_file
    from cartrita_assets.envfile.cutover import v1_settings_file
    from cartrita_assets.environments import build_resources, v1_env_file

    path = v1_env_file()  # where the v1 resource of build_resources() looks
    if path is not None:
        V1Settings.from_env_file(read_env_file(v1_settings_file(path)))
    build_resources()


def _forward(args: argparse.Namespace) -> int:
    _check_v1_env_file()
    replace = {"replace_existing_database": args.replace_existing_database}
    config: dict[str, object] = {"ops": {"restored_db": {"config": replace}}}
    if args.follow:
        backup = {"follow": True, "replica_identity_full": args.replica_identity_full}
        config["ops"]["v1_backup"] = {"config": backup}  # type: ignore[index]
    code = _run_job("forward_migration_job", config, args.reports_dir, args.verbose)
    if code != 0 or not args.via_pooler:
        return code
    # the pooler needs the restored database and the application role: only after a green run
    pooler = {"ops": {"v2_pooler": {"config": {"via_pooler": True}}}}
    return _run_job("v2_pooler_job", pooler, args.reports_dir, args.verbose)


def _cutover(args: argparse.Namespace) -> int:
    _check_v1_env_file()
    return _run_job("cutover_job", {}, args.reports_dir, args.verbose)


def _rollback(args: argparse.Namespace) -> int:
    _check_v1_env_file()
    confirm = {"confirm_overwrite_v1": args.confirm_overwrite_v1}
    return _run_job(
        "rollback_job", {"ops": {"v1_reinstated": {"config": confirm}}}, args.reports_dir,
        args.verbose,
    )  # fmt: skip


def _servers(args: argparse.Namespace) -> int:
    from cartrita_assets.environments import build_resources, current_environment

    if current_environment() != "local":
        raise CartritaError(
            "`cartrita servers` manages the local environment's servers; in a cluster use "
            "`cartrita v2 status` and `cartrita v2 logs`."
        )
    resources = build_resources()
    v2, demo = resources["v2"], resources["v1"].demo(print)
    _serving(args.action, resources["serving"], v2)
    targets = [("v2", v2.servers(print)), ("demo v1", demo.servers())]
    for label, (pg, rds) in targets:
        if args.action == "stop":
            print(f"{label} PostgreSQL: {'stopped' if pg.stop() else 'was not running'}")
            print(f"{label} Redis: {'stopped' if rds.stop() else 'was not running'}")
        elif args.action == "start" and label == "v2":
            print(v2.ensure_running(print))
        else:
            for kind, server in (("PostgreSQL", pg), ("Redis", rds)):
                state = "running" if server.is_running() else "stopped"
                print(f"{label} {kind} on 127.0.0.1:{server.port}: {state}")
    return 0


def _serving(action: str, serving: ServingResource, v2: V2Target) -> None:
    """The local pooler and read replica: started by their jobs only, stopped with v2 (first,
    so neither is left retrying a stopped server)."""
    if action == "stop":
        for label, server in serving.local_servers(v2):
            print(f"{label}: {'stopped' if server.stop() else 'was not running'}")
    elif action == "status":
        for line in serving.status_lines(v2):
            print(line)


def _demo(args: argparse.Namespace) -> int:
    from cartrita_assets.environments import build_resources

    source = build_resources()["v1"]
    demo = source.demo(print)
    if args.scale is not None:
        demo.scale = args.scale
    if args.action == "stop":
        demo.stop()
        return 0
    settings = demo.ensure()
    print(f"Demo v1 PostgreSQL: {settings.postgres.masked_dsn()}")
    if settings.redis:
        print(f"Demo v1 Redis: {settings.redis.masked_url()}")
    print(f"Its environment file (0600, holds the passwords): {demo.env_file.resolve()}")
    return 0


def _dev(args: argparse.Namespace) -> int:
    from cartrita_assets.environments import state_dir

    state = state_dir()
    ensure_dagster_home(state)
    # the code server may run elsewhere than this shell: pin the state folder it uses
    os.environ["CARTRITA_STATE_DIR"] = str(state)
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml")]
    return subprocess.call([*cmd, *args.dagster_args], env=os.environ.copy())


def _job_parser(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    helptext: str,
    func: object,
) -> argparse.ArgumentParser:
    """A subcommand that runs a job, with the options every job command shares."""
    cmd = sub.add_parser(name, help=helptext)
    cmd.add_argument("--env-file", help="v1's .env (default: ./.env, else the demo v1)")
    cmd.add_argument(
        "--reports-dir",
        default=None,
        help="where run summaries and integration reports go "
        "(default: $CARTRITA_REPORTS_DIR or ./reports)",
    )
    cmd.add_argument(
        "--verbose", action="store_true", help="also print Dagster's engine events (DEBUG)"
    )
    cmd.set_defaults(func=func)
    return cmd


def build_parser() -> argparse.ArgumentParser:
    """The ``cartrita`` argument parser."""
    parser = argparse.ArgumentParser(prog="cartrita", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fwd = _job_parser(sub, "forward", "run forward_migration_job and write a run summary", _forward)
    fwd.add_argument("--replace-existing-database", action="store_true",
                     help="let restored_db replace a v2 database it did not restore")  # fmt: skip
    fwd.add_argument("--via-pooler", action="store_true",
                     help="then start the local PgBouncer (v2_pooler_job) and point .env.v2 "
                          "at it")  # fmt: skip
    fwd.add_argument("--follow", action="store_true",
                     help="v2 follows v1 until `cartrita cutover`")  # fmt: skip
    fwd.add_argument("--replica-identity-full", action="store_true",
                     help="with --follow: REPLICA IDENTITY FULL on keyless v1 tables")  # fmt: skip
    back = _job_parser(sub, "rollback", "run rollback_job: v1 back as the backup recorded it",
                       _rollback)  # fmt: skip
    back.add_argument("--confirm-overwrite-v1", action="store_true",
                      help="allow overwriting a v1 that differs from the backup")  # fmt: skip
    srv = sub.add_parser("servers", help="status, start or stop the local v2 and demo servers")
    srv.add_argument("action", choices=["status", "start", "stop"])
    srv.set_defaults(func=_servers)
    demo = sub.add_parser("demo", help="start (and seed) or stop the demo v1 on its own")
    demo.add_argument("action", choices=["start", "stop"])
    demo.add_argument("--scale", type=int, default=None, help="data set size (default 1)")
    demo.set_defaults(func=_demo)
    cli_db.add_parser(sub)
    cli_backups.add_parser(sub)
    cli_follow.add_parser(sub, _job_parser, _cutover)
    cli_v2.add_parser(sub)
    cli_test.add_parser(sub)
    dev = sub.add_parser(
        "dev",
        help="open the Dagster UI on this project; other arguments go to `dagster dev` "
        "(e.g. cartrita dev -p 3001)",
    )
    dev.set_defaults(func=_dev, dagster_args=[])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cartrita`` command."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "dev":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.dagster_args = extra if args.command == "dev" else []
    if getattr(args, "env_file", None):
        os.environ["CARTRITA_V1_ENV_FILE"] = str(Path(args.env_file).resolve())
    try:
        return int(args.func(args))
    except CartritaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
