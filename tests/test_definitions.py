"""The definitions load without touching a server, and every part is described for the UI."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg

from cartrita_assets.definitions import build_definitions

DESIGN_CARD_ASSETS = {
    "v1_backup",
    "k8s_secrets",
    "pgvector_cluster",
    "restored_db",
    "schema_version",
    "embeddings_index",
    "integration_report",
}
# Follow mode: replication_stream runs in the forward job (materialized only with follow: true);
# v2_cutover is cutover_job's.
FOLLOW_ASSETS = {"replication_stream", "v2_cutover"}


def test_every_job_schedule_and_sensor_resolves():
    defs = build_definitions()
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert {"forward_migration_job", "rollback_job", "reindex_embeddings_job",
            "v2_health_checks_job", "v2_backup_job"} <= jobs  # fmt: skip
    for schedule in defs.schedules or []:
        defs.resolve_schedule_def(schedule.name)
    for sensor in defs.sensors or []:
        defs.resolve_sensor_def(sensor.name)


def test_forward_job_selects_the_forward_assets():
    job = build_definitions().resolve_job_def("forward_migration_job")
    keys = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
    assert keys == DESIGN_CARD_ASSETS | {"replication_stream"}


def test_assets_and_checks_are_described_grouped_and_owned():
    graph = build_definitions().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 30, key
        assert node.group_name in {
            "v1",
            "v2",
            "vectors",
            "rollback",
            "v2_operations",
            "v2_serving",
        }, key
        assert node.owners == ["team:data-platform"], key
        assert node.kinds, key
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        assert spec.description and len(spec.description) > 20, check_key


def test_import_connects_to_nothing():
    # No server runs on these ports: importing must not try to reach one.
    code = (
        "import os; os.environ.update(CARTRITA_V2_PG_PORT='1', CARTRITA_DEMO_PG_PORT='2');"
        "import cartrita_assets.definitions as d; print(len(list(d.defs.assets)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # + v1_reinstated, v2_backup, v2_pooler, v2_read_replica and follow mode's two
    assert int(out.stdout.strip()) == len(DESIGN_CARD_ASSETS) + 4 + len(FOLLOW_ASSETS)


def test_dagster_definitions_validate():
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert isinstance(dg.__version__, str)


def test_rollback_job_selects_only_the_rollback():
    job = build_definitions().resolve_job_def("rollback_job")
    keys = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
    assert keys == {"v1_reinstated"}


def test_serving_jobs_select_only_their_asset():
    defs = build_definitions()
    for job, asset in (("v2_pooler_job", "v2_pooler"), ("v2_read_replica_job", "v2_read_replica")):
        keys = defs.resolve_job_def(job).asset_layer.selected_asset_keys
        assert {key.to_user_string() for key in keys} == {asset}


def test_v2_backup_job_selects_only_the_v2_backup():
    defs = build_definitions()
    job = defs.resolve_job_def("v2_backup_job")
    keys = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
    assert keys == {"v2_backup"}
    schedule = defs.resolve_schedule_def("v2_backup_schedule")
    assert schedule.job_name == "v2_backup_job" and schedule.cron_schedule == "0 3 * * *"


def test_follow_mode_jobs_and_sensor():
    defs = build_definitions()
    cutover = defs.resolve_job_def("cutover_job")
    assert {k.to_user_string() for k in cutover.asset_layer.selected_asset_keys} == {"v2_cutover"}
    lag = defs.resolve_job_def("replication_lag_job")
    checks = {k.name for k in lag.asset_layer.asset_graph.asset_check_keys}
    assert "replication_lag_is_small" in checks
    assert defs.resolve_sensor_def("replication_lag_sensor").job_name == "replication_lag_job"
