"""Forward migration vs the bare baseline, on the same data, binaries and machine, in one run.

    python benchmarks/forward_migration.py --scale 313     # about 1 GB of v1 data

Baseline: what a careful person types, ``pg_dump -Fc`` then ``createdb`` + ``pg_restore``, no
checks. Ours: ``forward_migration_job``'s data path (backup, secrets, cluster, restore, schema)
with every asset check; embedding is measured by ``benchmarks/vector_search.py``. Prints both
times and the ratio (target: at most 1.25 at about 1 GB).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg

from cartrita_assets.definitions import build_definitions
from cartrita_assets.defs.jobs import FORWARD_ASSETS
from cartrita_assets.demo.servers import DemoV1
from cartrita_assets.local.system import free_port
from cartrita_assets.pg.connect import connect
from cartrita_assets.pg.tools import run_tool
from cartrita_assets.resources.embedder import EmbedderResource
from cartrita_assets.resources.lock import MigrationLock
from cartrita_assets.resources.reports import ReportStore, release_run_lock
from cartrita_assets.resources.store import BackupStore
from cartrita_assets.resources.v1 import V1Source
from cartrita_assets.resources.v2 import LocalV2Target


def baseline(v1: DemoV1, v2: LocalV2Target, work: Path) -> float:
    """pg_dump -Fc, then createdb and pg_restore into v2: the bare copy, timed."""
    settings = v1.ensure()
    dump = work / "baseline.dump"
    started = time.perf_counter()
    dumped = run_tool(
        ["pg_dump", "-Fc", f"--file={dump}", f"--dbname={settings.postgres.dbname}"],
        settings.postgres, app_name="baseline",
    )  # fmt: skip
    with connect(v2.admin(), role="v2") as conn:
        conn.execute("DROP DATABASE IF EXISTS baseline WITH (FORCE)")
        conn.execute("CREATE DATABASE baseline OWNER cartrita")
    restored = run_tool(
        ["pg_restore", "--dbname=baseline", str(dump)], v2.admin(), app_name="baseline"
    )
    elapsed = time.perf_counter() - started
    assert dumped.returncode == 0 and restored.returncode == 0, dumped.stderr + restored.stderr
    dump.unlink()
    return elapsed


def ours(resources: dict[str, object]) -> tuple[float, bool]:
    """forward_migration_job with all its checks, timed."""
    job = build_definitions(resources).resolve_job_def("forward_migration_job")
    started = time.perf_counter()
    skip = ("embeddings_index", "integration_report")
    data_path = [dg.AssetKey(k) for k in FORWARD_ASSETS if k not in skip]
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, asset_selection=data_path
    )
    release_run_lock(result.run_id)
    return time.perf_counter() - started, result.success


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=20, help="demo data set size (313 ~ 1 GB)")
    parser.add_argument("--repeat", type=int, default=1, help="alternate rounds; best time kept")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cartrita-bench-"))
    work.chmod(0o755)
    demo = DemoV1(work / "v1", free_port(), free_port(), scale=args.scale, log=print)
    v2 = LocalV2Target(base_dir=str(work / "v2"), pg_port=free_port(), redis_port=free_port())
    resources = {
        "v1": V1Source(default_env_file=str(work / "none.env"), demo_dir=str(demo.base_dir),
                       demo_pg_port=demo.pg_port, demo_redis_port=demo.redis_port,
                       demo_scale=args.scale),
        "v2": v2,
        "backups": BackupStore(root=str(work / "backups")),
        "migration_lock": MigrationLock(path=str(work / "lock")),
        "embedder": EmbedderResource(),
        "reports": ReportStore(root=str(work / "reports")),
    }  # fmt: skip
    try:
        settings = demo.ensure()
        v2.ensure_running(print)
        with connect(settings.postgres, role="v1") as conn:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
        with connect(v2.admin(), role="v2") as conn:
            conn.execute("CREATE ROLE cartrita LOGIN")
        base_times, our_times = [], []
        for round_no in range(1, args.repeat + 1):
            base_times.append(baseline(demo, v2, work))
            seconds, ok = ours(resources)
            if not ok:
                raise SystemExit("forward_migration_job failed; see the log above")
            our_times.append(seconds)
            shutil.rmtree(work / "backups", ignore_errors=True)
            with connect(v2.admin(), role="v2") as conn:  # every round restores from scratch
                conn.execute("DROP DATABASE IF EXISTS cartrita WITH (FORCE)")
            print(f"round {round_no}: baseline {base_times[-1]:.1f}s, ours {our_times[-1]:.1f}s")
        best_base, best_ours = min(base_times), min(our_times)
        print(f"\nv1 database: {size / 2**20:.0f} MiB (scale {args.scale})")
        print(f"baseline (pg_dump -Fc + pg_restore, no checks): {best_base:.1f}s")
        print(f"forward_migration_job (all checks):             {best_ours:.1f}s")
        print(f"ratio ours/baseline: {best_ours / best_base:.2f} (target <= 1.25)")
    finally:
        v2.stop(lambda _m: None)
        demo.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
