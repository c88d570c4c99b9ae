"""v2_health_checks_schedule: v2's asset checks on a cron (hourly unless configured)."""

import dagster as dg

from cartrita_assets.defs.facts import run_in_flight, v2_database
from cartrita_assets.defs.jobs import v2_health_checks_job
from cartrita_assets.environments import CRON_ENV, health_check_cron
from cartrita_assets.report.health import health_check_decision


def build_health_checks_schedule(cron: str | None = None) -> dg.ScheduleDefinition:
    """The schedule on ``cron`` (default: :func:`health_check_cron`)."""
    cron = cron or health_check_cron()

    @dg.schedule(
        name="v2_health_checks_schedule",
        job=v2_health_checks_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Runs v2_health_checks_job on {cron!r} (UTC; {CRON_ENV}, default hourly): every "
            "check of pgvector_cluster, schema_version and embeddings_index, nothing materialized. "
            "Skips while there is no restored database, after a rollback, and while a run that "
            "writes v2 is in flight. Failed checks are reported by the alert sensors."
        ),
    )
    def v2_health_checks_schedule(
        context: dg.ScheduleEvaluationContext,
    ) -> dg.RunRequest | dg.SkipReason:
        database, why = v2_database(context.instance)
        decision = health_check_decision(database, why, run_in_flight(context.instance))
        if isinstance(decision, str):
            return dg.SkipReason(decision)
        return dg.RunRequest(tags=decision.tags)

    return v2_health_checks_schedule


v2_health_checks_schedule = build_health_checks_schedule()
