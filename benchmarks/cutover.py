"""Follow mode under load: demo v1 takes writes during the whole forward + cutover.

    python benchmarks/cutover.py --scale 20 200 --writers 4   # both sizes in one run
    python benchmarks/cutover.py --quick                       # scale 1, 2 writers: seconds

For each scale: a fresh demo v1 and v2, writer clients started, the forward data path in follow
mode (v1_backup in the slot's snapshot, restore, replication_stream), a few seconds of
streaming, then cutover_job. Prints acknowledged writes, writes found in v2, lost writes (must
be 0), the downtime (v1 refusing writes to v2 ready) and the time to verify the switch point.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg

from cartrita_assets.cluster.v2 import LocalV2Target
from cartrita_assets.definitions import build_definitions
from cartrita_assets.demo.servers import DemoV1
from cartrita_assets.demo.writers import Writers, create_tables, lost_redis_keys, missing_in_v2
from cartrita_assets.environments import folder_resources
from cartrita_assets.local.system import free_port
from cartrita_assets.redis_copy.client import client_for
from cartrita_assets.resources.lock import release_run_lock
from cartrita_assets.resources.v1 import V1Source

FOLLOW = {"ops": {"v1_backup": {"config": {"follow": True, "replica_identity_full": True}}}}
TO_STREAM = ["v1_backup", "k8s_secrets", "pgvector_cluster", "restored_db", "replication_stream"]


def _run(
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    job: str | None,
    keys: list[str] | None = None,
    config: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    defs = build_definitions(resources)
    job_def = defs.resolve_job_def(job) if job else defs.resolve_implicit_global_asset_job_def()
    selection = [dg.AssetKey(k) for k in keys] if keys else None
    result = job_def.execute_in_process(
        instance=instance, run_config=config or {}, asset_selection=selection,
        raise_on_error=False,
    )  # fmt: skip
    release_run_lock(result.run_id)
    if not result.success:
        raise SystemExit(f"{job or keys} failed; see the log above")
    return result


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization  # type: ignore[union-attr]
            if mat.asset_key.to_user_string() == asset:
                return {k: v.value for k, v in mat.metadata.items()}
    return {}


def one_scale(scale: int, writers: int, stream_s: float) -> dict[str, Any]:
    """Forward in follow mode then cut over, under ``writers`` clients; the measurements."""
    work = Path(tempfile.mkdtemp(prefix="cartrita-cutover-"))
    work.chmod(0o755)
    demo = DemoV1(work / "v1", free_port(), free_port(), scale=scale, log=print)
    v2 = LocalV2Target(base_dir=str(work / "v2"), pg_port=free_port(), redis_port=free_port())
    v1 = V1Source(default_env_file=str(work / "none.env"), demo_dir=str(demo.base_dir),
                       demo_pg_port=demo.pg_port, demo_redis_port=demo.redis_port,
                       demo_scale=scale)  # fmt: skip
    resources = folder_resources(work, v1, v2)
    try:
        settings = demo.ensure()
        create_tables(settings)
        instance = dg.DagsterInstance.ephemeral()
        with Writers(settings, writers) as load:
            started = time.perf_counter()
            _run(resources, instance, None, TO_STREAM, FOLLOW)
            forward_s = time.perf_counter() - started
            time.sleep(stream_s)
            result = _run(resources, instance, "cutover_job")
            time.sleep(1.0)  # writers keep trying against frozen v1
        meta = _metadata(result, "v2_cutover")
        acked = load.acked
        db = settings.postgres.dbname
        with psycopg.connect(**v2.admin(db).conninfo_kwargs()) as conn:
            lost = missing_in_v2(acked, conn)
        lost += lost_redis_keys(acked, client_for(v2.redis()))
        pg_acked = sum(1 for t in acked.rows.values() for _ in t)
        return {
            "scale": scale, "acked": acked.count, "checked": pg_acked + len(acked.redis),
            "lost": len(lost), "refused": acked.refused,
            "forward_s": forward_s, "downtime_s": float(meta["downtime_seconds"]),
            "catch_up_s": float(meta["catch_up_seconds"]),
            "verify_s": float(meta["verify_seconds"]), "examples": lost[:3],
        }  # fmt: skip
    finally:
        v2.stop(lambda _m: None)
        demo.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--stream-seconds", type=float, default=5.0,
                        help="streaming time between the forward run and the cutover")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="scale 1, 2 writers: seconds")
    args = parser.parse_args()
    if args.quick:
        args.scale, args.writers, args.stream_seconds = [1], 2, 1.0
    rows = [one_scale(s, args.writers, args.stream_seconds) for s in args.scale]
    print(f"\n{args.writers} writers (PostgreSQL insert/update/delete + Redis SET, each in a loop)")
    print("| scale | acked writes | final rows/keys checked | found in v2 | lost | forward (s) "
          "| downtime (s) | catch-up (s) | verify (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scale']} | {r['acked']} | {r['checked']} | {r['checked'] - r['lost']} | "
              f"{r['lost']} | "
              f"{r['forward_s']:.1f} | {r['downtime_s']:.2f} | {r['catch_up_s']:.2f} | "
              f"{r['verify_s']:.2f} |")  # fmt: skip
        if r["lost"]:
            print(f"LOST at scale {r['scale']}: {r['examples']}")
    if any(r["lost"] for r in rows):
        raise SystemExit("acknowledged writes were lost")


if __name__ == "__main__":
    main()
