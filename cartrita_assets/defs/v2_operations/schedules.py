"""v2_backup_schedule: a backup of the serving v2 on a cron (daily unless configured)."""

import dagster as dg

from cartrita_assets.defs.facts import run_in_flight, v2_database
from cartrita_assets.defs.jobs import v2_backup_job
from cartrita_assets.environments import V2_BACKUP_CRON_ENV, v2_backup_cron
from cartrita_assets.report.health import health_check_decision


def build_v2_backup_schedule(cron: str | None = None) -> dg.ScheduleDefinition:
    """The schedule on ``cron`` (default: :func:`v2_backup_cron`)."""
    cron = cron or v2_backup_cron()

    @dg.schedule(
        name="v2_backup_schedule",
        job=v2_backup_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Runs v2_backup_job on {cron!r} (UTC; {V2_BACKUP_CRON_ENV}, default daily): a "
            "backup of v2, its restore test, then retention. Skips while there is no restored "
            "database, after a rollback, and while a run that writes v2 is in flight."
        ),
    )
    def v2_backup_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        database, why = v2_database(context.instance)
        busy = run_in_flight(context.instance)
        decision = health_check_decision(database, why, busy, what="v2 backup")
        if isinstance(decision, str):
            return dg.SkipReason(decision)
        return dg.RunRequest(tags=decision.tags)

    return v2_backup_schedule


v2_backup_schedule = build_v2_backup_schedule()
