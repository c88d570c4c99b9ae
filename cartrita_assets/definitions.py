"""The Dagster definitions: the graph, its checks and jobs, bound to the environment's resources."""

from __future__ import annotations

import dagster as dg

from cartrita_assets.defs.backup import assets as backup_assets
from cartrita_assets.defs.backup import checks as backup_checks
from cartrita_assets.defs.cluster import assets as cluster_assets
from cartrita_assets.defs.cluster import checks as cluster_checks
from cartrita_assets.defs.cluster import secrets as cluster_secrets
from cartrita_assets.defs.follow import assets as follow_assets
from cartrita_assets.defs.follow import checks as follow_checks
from cartrita_assets.defs.follow.sensors import replication_lag_sensor
from cartrita_assets.defs.jobs import JOBS
from cartrita_assets.defs.report import assets as report_assets
from cartrita_assets.defs.report import checks as report_checks
from cartrita_assets.defs.report.alerts import check_failure_alert_sensor, run_failure_alert_sensor
from cartrita_assets.defs.report.schedules import v2_health_checks_schedule
from cartrita_assets.defs.restore import assets as restore_assets
from cartrita_assets.defs.restore import checks as restore_checks
from cartrita_assets.defs.rollback import assets as rollback_assets
from cartrita_assets.defs.rollback import checks as rollback_checks
from cartrita_assets.defs.schema import assets as schema_assets
from cartrita_assets.defs.schema import checks as schema_checks
from cartrita_assets.defs.serving import assets as serving_assets
from cartrita_assets.defs.serving import checks as serving_checks
from cartrita_assets.defs.v2_operations import assets as v2_operations_assets
from cartrita_assets.defs.v2_operations import checks as v2_operations_checks
from cartrita_assets.defs.v2_operations.schedules import v2_backup_schedule
from cartrita_assets.defs.vectors import assets as vector_assets
from cartrita_assets.defs.vectors import checks as vector_checks
from cartrita_assets.defs.vectors.sensors import index_volume_sensor, stale_embeddings_sensor
from cartrita_assets.environments import build_resources, executor_for, serving_from_env

ASSET_MODULES = [
    backup_assets,
    cluster_secrets,
    cluster_assets,
    restore_assets,
    follow_assets,
    schema_assets,
    vector_assets,
    report_assets,
    rollback_assets,
    serving_assets,
    v2_operations_assets,
]
CHECK_MODULES = [
    backup_checks,
    cluster_secrets,
    cluster_checks,
    restore_checks,
    follow_checks,
    schema_checks,
    vector_checks,
    report_checks,
    rollback_checks,
    serving_checks,
    v2_operations_checks,
]
# Day-to-day operation of v2, each beside the phase it keeps healthy.
SENSORS = [
    stale_embeddings_sensor,
    index_volume_sensor,
    check_failure_alert_sensor,
    run_failure_alert_sensor,
    replication_lag_sensor,
]
SCHEDULES = [v2_health_checks_schedule, v2_backup_schedule]


def build_definitions(resources: dict[str, object] | None = None) -> dg.Definitions:
    """All assets, checks and jobs, bound to ``resources`` (default: the current environment's)."""
    resources = resources if resources is not None else build_resources()
    if "serving" not in resources:  # callers that predate the pooler and replica
        resources = {**resources, "serving": serving_from_env()}
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        asset_checks=dg.load_asset_checks_from_modules(CHECK_MODULES),
        jobs=JOBS,
        sensors=SENSORS,
        schedules=SCHEDULES,
        resources=resources,
        executor=executor_for(),
    )


defs = build_definitions()
