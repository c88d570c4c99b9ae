"""replication_lag_sensor: while v2 follows v1, measure the lag every minute through
replication_lag_job (so the UI plots it) and warn when it grows or passes a limit."""

import json

import dagster as dg

from cartrita_assets.defs.facts import short_error
from cartrita_assets.follow import ledger as ledgers
from cartrita_assets.follow.lag import Lag, growing, measure, verdict
from cartrita_assets.follow.v1side import ROLE
from cartrita_assets.pg.connect import connect
from cartrita_assets.resources.follow import FollowStore
from cartrita_assets.resources.v1 import V1Source


@dg.sensor(
    job_name="replication_lag_job",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "While follow mode streams v1 to v2, runs replication_lag_job every minute (the lag as "
        "check metadata the UI plots) and warns when v2 falls further behind or a limit is "
        "passed; skips when nothing follows."
    ),
)
def replication_lag_sensor(
    context: dg.SensorEvaluationContext, v1: V1Source, follow: FollowStore
) -> dg.SensorResult | dg.SkipReason:
    """Runs replication_lag_job while follow mode streams; logs a warning when v2 falls further
    behind or the lag passes a limit (the check then records it)."""
    ledger = ledgers.load(follow.path())
    if ledger is None or ledger.state != "following":
        return dg.SkipReason("Follow mode is not streaming: no lag to watch")
    try:
        settings = v1.settings(start_demo=False)
        with connect(settings.postgres, role=ROLE, read_only=True) as conn:
            now = measure(conn, ledger.slot, None, None)
    except Exception as exc:
        return dg.SkipReason(f"Could not measure the lag: {short_error(exc)}")
    previous = Lag(**json.loads(context.cursor)) if context.cursor else None
    problems = lag_warnings(previous, now, follow)
    for problem in problems:
        context.log.warning(f"replication lag: {problem}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(tags={"cartrita/kind": "replication-lag"})],
        cursor=json.dumps(now.__dict__),
    )


def lag_warnings(previous: Lag | None, now: Lag, follow: FollowStore) -> list[str]:
    """What the sensor warns about: a limit passed, or v2 further behind than last time."""
    problems = verdict(now, follow.limits())
    if previous is not None and growing(previous, now):
        problems.append(f"PostgreSQL lag grew from {previous.pg_bytes} to {now.pg_bytes} bytes")
    return problems
