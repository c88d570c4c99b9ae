"""v2's scheduled backup on the demo: how long it takes, how big it is, how long its restore test
takes.

    python benchmarks/v2_backup.py --scale 100     # about 314 MiB of data in v2
    python benchmarks/v2_backup.py --quick         # scale 1, one round: a smoke run

Seeds the demo v1 at ``--scale``, restores it into a fresh local v2 (the forward job's data path:
``v1_backup`` to ``restored_db``), then runs ``v2_backup_job`` ``--repeat`` times: ``v2_backup``
(pg_dump -Fd of one snapshot, every table counted and hashed in it, Redis keys, sha256 of every
file) and its check ``v2_backup_restores`` (restore into a scratch database, every table and
sequence compared with the manifest, the scratch database dropped). Prints the best of each,
the backup's size on disk and the database's size.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import dagster as dg

from cartrita_assets.backup.v2_store import V2BackupStore
from cartrita_assets.cluster.v2 import LocalV2Target
from cartrita_assets.definitions import build_definitions
from cartrita_assets.demo.servers import DemoV1
from cartrita_assets.environments import folder_resources
from cartrita_assets.local.system import free_port
from cartrita_assets.pg.connect import connect
from cartrita_assets.resources.lock import release_run_lock
from cartrita_assets.resources.v1 import V1Source

DATA_PATH = ("v1_backup", "k8s_secrets", "pgvector_cluster", "restored_db")


def _sibling(name: str) -> ModuleType:
    """Another script of this folder, imported by path (benchmarks/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _run(
    defs: dg.Definitions, instance: dg.DagsterInstance, **kwargs: object
) -> dg.ExecuteInProcessResult:
    job = kwargs.pop("job", None)
    if job:
        result = defs.resolve_job_def(str(job)).execute_in_process(
            instance=instance, raise_on_error=False
        )
    else:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance,
            raise_on_error=False,
            **kwargs,  # type: ignore[arg-type]
        )
    release_run_lock(result.run_id)
    if not result.success:
        raise SystemExit("a run failed; see the log above")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=20, help="demo data set size (100 ~ 314 MiB)")
    parser.add_argument("--repeat", type=int, default=1, help="backups taken; best time kept")
    parser.add_argument("--quick", action="store_true", help="scale 1, one round: seconds")
    args = parser.parse_args()
    if args.quick:
        args.scale, args.repeat = 1, 1
    work = Path(tempfile.mkdtemp(prefix="cartrita-bench-"))
    work.chmod(0o755)
    demo = DemoV1(work / "v1", free_port(), free_port(), scale=args.scale, log=print)
    v2 = LocalV2Target(base_dir=str(work / "v2"), pg_port=free_port(), redis_port=free_port())
    store = V2BackupStore(root=str(work / "v2-backups"), keep=1, max_age_days=0)
    v1 = V1Source(default_env_file=str(work / "none.env"), demo_dir=str(demo.base_dir),
                       demo_pg_port=demo.pg_port, demo_redis_port=demo.redis_port,
                       demo_scale=args.scale)  # fmt: skip
    resources = folder_resources(work, v1, v2)
    resources["v2_backups"] = store
    steps = _sibling("forward_migration").step_seconds
    try:
        demo.ensure()
        defs = build_definitions(resources)
        instance = dg.DagsterInstance.ephemeral()
        _run(defs, instance, asset_selection=[dg.AssetKey(k) for k in DATA_PATH])
        with connect(v2.admin("cartrita"), role="v2") as conn:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
        best: dict[str, float] = {}
        for round_no in range(1, args.repeat + 1):
            started = time.perf_counter()
            result = _run(defs, instance, job="v2_backup_job")
            total = time.perf_counter() - started
            seconds = steps(result)
            backup = seconds.get("v2_backup", 0.0)
            check = sum(v for k, v in seconds.items() if k != "v2_backup")
            print(f"round {round_no}: backup {backup:.1f}s, restore test {check:.1f}s, "
                  f"job {total:.1f}s")  # fmt: skip
            for key, value in (("backup", backup), ("restore test", check), ("job", total)):
                best[key] = min(best.get(key, value), value)
        (entry,) = store.entries()  # keep=1: the older ones were pruned after each test
        print(f"\nv2 database: {size / 2**20:.0f} MiB (demo scale {args.scale})")
        print(f"backup on disk: {entry.bytes / 2**20:.0f} MiB ({entry.backup_id}, "
              f"{'verified' if entry.verified else 'NOT verified'})")  # fmt: skip
        for key, value in best.items():
            print(f"{key:<14} {value:7.1f}s (best of {args.repeat})")
    finally:
        v2.stop(lambda _m: None)
        demo.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
