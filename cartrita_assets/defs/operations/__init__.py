"""Day-to-day operation of v2: re-indexing on source changes and volume, hourly health checks,
and alerts on failed checks and steps.

Wire into the definitions with ``jobs=[..., *JOBS]``, ``sensors=SENSORS``,
``schedules=SCHEDULES``.
"""

from cartrita_assets.defs.operations.alerts import (
    check_failure_alert_sensor,
    run_failure_alert_sensor,
)
from cartrita_assets.defs.operations.jobs import reindex_embeddings_job, v2_health_checks_job
from cartrita_assets.defs.operations.schedules import v2_health_checks_schedule
from cartrita_assets.defs.operations.sensors import index_volume_sensor, stale_embeddings_sensor

JOBS = [reindex_embeddings_job, v2_health_checks_job]
SENSORS = [
    stale_embeddings_sensor,
    index_volume_sensor,
    check_failure_alert_sensor,
    run_failure_alert_sensor,
]
SCHEDULES = [v2_health_checks_schedule]

__all__ = ["JOBS", "SCHEDULES", "SENSORS"]
