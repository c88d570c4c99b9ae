"""Forward migration against a naive and an expert bare copy: same data, binaries, machine, run.

    python benchmarks/forward_migration.py --scale 100     # about 314 MiB of v1 data
    python benchmarks/forward_migration.py --scale 313     # about 1 GB
    python benchmarks/forward_migration.py --quick         # tiny data, seconds: it still runs

naive: ``pg_dump -Fc`` (gzip) then ``createdb`` + ``pg_restore``, no checks.
expert: ``pg_dump -Fd -jN -Z0`` then ``pg_restore -jN`` (N = the machine's cores), no checks.
ours: ``forward_migration_job``'s data path (backup, secrets, cluster, restore, schema) with
every asset check; embedding is measured by ``benchmarks/vector_search.py``.
Prints the three best times of ``--repeat`` alternating rounds, both ratios (target: ours at
most 1.25x the expert) and ours step by step.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from cartrita_assets.cluster.v2 import LocalV2Target
from cartrita_assets.definitions import build_definitions
from cartrita_assets.defs.jobs import FORWARD_ASSETS
from cartrita_assets.demo.servers import DemoV1
from cartrita_assets.environments import folder_resources
from cartrita_assets.local.system import free_port
from cartrita_assets.pg.connect import connect
from cartrita_assets.pg.tools import run_tool
from cartrita_assets.resources.lock import release_run_lock
from cartrita_assets.resources.v1 import V1Source


def _fresh_database(v2: LocalV2Target, name: str) -> None:
    with connect(v2.admin(), role="v2") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name} OWNER cartrita")


def bare_copy(
    v1: DemoV1, v2: LocalV2Target, work: Path, dump_args: Sequence[str], restore_args: Sequence[str]
) -> float:
    """pg_dump ``dump_args``, a fresh database, pg_restore into v2: timed, no checks."""
    settings = v1.ensure()
    dump = work / "bare.dump"
    started = time.perf_counter()
    dumped = run_tool(
        ["pg_dump", *dump_args, f"--file={dump}", f"--dbname={settings.postgres.dbname}"],
        settings.postgres, app_name="bench-bare-copy",
    )  # fmt: skip
    _fresh_database(v2, "bare_copy")
    restored = run_tool(
        ["pg_restore", *restore_args, "--dbname=bare_copy", str(dump)],
        v2.admin(), app_name="bench-bare-copy",
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if dumped.returncode or restored.returncode:
        raise SystemExit("bare copy failed:\n" + "\n".join(dumped.stderr + restored.stderr))
    shutil.rmtree(dump, ignore_errors=True) if dump.is_dir() else dump.unlink()
    return elapsed


def naive(v1: DemoV1, v2: LocalV2Target, work: Path) -> float:
    """What a careful person types: ``pg_dump -Fc`` (gzip) and a plain ``pg_restore``."""
    return bare_copy(v1, v2, work, ["-Fc"], [])


def expert(v1: DemoV1, v2: LocalV2Target, work: Path) -> float:
    """What an expert types: a directory dump, one job per core, no compression."""
    jobs = f"-j{os.cpu_count() or 1}"
    return bare_copy(v1, v2, work, ["-Fd", jobs, "-Z0"], [jobs])


def step_seconds(result: dg.ExecuteInProcessResult) -> dict[str, float]:
    """Seconds each step of the run took, from its STEP_SUCCESS / STEP_FAILURE events."""
    out: dict[str, float] = {}
    for event in result.all_events:
        if event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key:
            duration = getattr(event.event_specific_data, "duration_ms", None)
            if duration is not None:
                out[event.step_key] = duration / 1000
    return out


def ours(resources: dict[str, object]) -> tuple[float, bool, dict[str, float]]:
    """forward_migration_job's data path with all its checks, timed, and each step's seconds."""
    job = build_definitions(resources).resolve_job_def("forward_migration_job")
    skip = ("embeddings_index", "integration_report")
    data_path = [dg.AssetKey(k) for k in FORWARD_ASSETS if k not in skip]
    instance = dg.DagsterInstance.ephemeral()  # a user's instance exists before the run starts
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance, raise_on_error=False, asset_selection=data_path
    )
    elapsed = time.perf_counter() - started
    release_run_lock(result.run_id)
    return elapsed, result.success, step_seconds(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=20, help="demo data set size (313 ~ 1 GB)")
    parser.add_argument("--repeat", type=int, default=1, help="alternate rounds; best time kept")
    parser.add_argument("--quick", action="store_true", help="scale 1, one round: seconds")
    args = parser.parse_args()
    if args.quick:
        args.scale, args.repeat = 1, 1
    work = Path(tempfile.mkdtemp(prefix="cartrita-bench-"))
    work.chmod(0o755)
    demo = DemoV1(work / "v1", free_port(), free_port(), scale=args.scale, log=print)
    v2 = LocalV2Target(base_dir=str(work / "v2"), pg_port=free_port(), redis_port=free_port())
    v1 = V1Source(default_env_file=str(work / "none.env"), demo_dir=str(demo.base_dir),
                       demo_pg_port=demo.pg_port, demo_redis_port=demo.redis_port,
                       demo_scale=args.scale)  # fmt: skip
    resources = folder_resources(work, v1, v2)
    try:
        settings = demo.ensure()
        v2.ensure_running(print)
        with connect(settings.postgres, role="v1") as conn:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
        with connect(v2.admin(), role="v2") as conn:
            conn.execute("CREATE ROLE cartrita LOGIN")
        times: dict[str, list[float]] = {"naive": [], "expert": [], "ours": []}
        steps: dict[str, float] = {}
        for round_no in range(1, args.repeat + 1):
            times["naive"].append(naive(demo, v2, work))
            times["expert"].append(expert(demo, v2, work))
            seconds, ok, round_steps = ours(resources)
            if not ok:
                raise SystemExit("forward_migration_job failed; see the log above")
            if not times["ours"] or seconds < min(times["ours"]):
                steps = round_steps
            times["ours"].append(seconds)
            shutil.rmtree(work / "backups", ignore_errors=True)
            with connect(v2.admin(), role="v2") as conn:  # every round restores from scratch
                conn.execute("DROP DATABASE IF EXISTS cartrita WITH (FORCE)")
            print(f"round {round_no}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()))
        print_results(size, args.scale, {k: min(v) for k, v in times.items()}, steps)
    finally:
        v2.stop(lambda _m: None)
        demo.stop()
        shutil.rmtree(work, ignore_errors=True)


def print_results(size: int, scale: int, best: dict[str, float], steps: dict[str, float]) -> None:
    """The three best times, both ratios and ours step by step."""
    cores = os.cpu_count() or 1
    print(f"\nv1 database: {size / 2**20:.0f} MiB (scale {scale}), {cores} core(s)")
    print(f"naive  (pg_dump -Fc + pg_restore, no checks):             {best['naive']:7.1f}s")
    print(f"expert (pg_dump -Fd -j{cores} -Z0 + pg_restore -j{cores}, no checks): "
          f"{best['expert']:7.1f}s")  # fmt: skip
    print(f"ours   (forward_migration_job data path, all checks):     {best['ours']:7.1f}s")
    print(f"ours / naive:  {best['ours'] / best['naive']:.2f}")
    print(f"ours / expert: {best['ours'] / best['expert']:.2f} (target <= 1.25)")
    print("ours, step by step (steps of one run may overlap):")
    for key, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        print(f"  {key:45s} {seconds:7.2f}s")


if __name__ == "__main__":
    main()
