"""When v2_health_checks_schedule runs v2's checks: the pure decision, and the schedule around it
on Dagster's schedule context and an in-memory instance (no servers: the decision needs none)."""

from __future__ import annotations

import dagster as dg

from cartrita_assets.defs.report.schedules import build_health_checks_schedule
from cartrita_assets.report.health import DATABASE_TAG, HealthCheckRun, health_check_decision

BUSY = "forward_migration_job run 1234abcd (started)"


def test_a_database_and_nothing_in_flight_asks_for_a_run_on_it():
    decision = health_check_decision("cartrita", "", None)
    assert decision == HealthCheckRun("cartrita")
    assert decision.tags == {DATABASE_TAG: "cartrita"}


def test_no_database_skips_saying_why_even_while_a_run_is_in_flight():
    why = "v1 was reinstated after the last restore (v2 is rolled back)"
    assert health_check_decision(None, why, None) == f"No health checks: {why}."
    assert health_check_decision(None, why, BUSY) == f"No health checks: {why}."


def test_a_run_writing_v2_in_flight_skips_naming_it():
    assert health_check_decision("cartrita", "", BUSY) == (
        f"No health checks while {BUSY} is in flight."
    )


def _schedule_result(instance: dg.DagsterInstance) -> dg.RunRequest | dg.SkipReason:
    schedule = build_health_checks_schedule("0 * * * *")
    return schedule(dg.build_schedule_context(instance=instance))  # type: ignore[return-value]


def test_the_schedule_follows_restore_rollback_and_runs_in_flight(disk_instance):
    instance = disk_instance  # a schedule's context needs an instance that has a reference
    skip = _schedule_result(instance)
    assert isinstance(skip, dg.SkipReason) and "no restored database yet" in skip.skip_message

    instance.report_runless_asset_event(
        dg.AssetMaterialization("restored_db", metadata={"database": "cartrita_v2"})
    )
    request = _schedule_result(instance)
    assert isinstance(request, dg.RunRequest)
    assert request.tags[DATABASE_TAG] == "cartrita_v2"

    run = instance.add_run(
        dg.DagsterRun(job_name="reindex_embeddings_job", status=dg.DagsterRunStatus.STARTED)
    )
    skip = _schedule_result(instance)
    assert isinstance(skip, dg.SkipReason)
    assert skip.skip_message == (
        f"No health checks while reindex_embeddings_job run {run.run_id[:8]} (started) is in "
        "flight."
    )
    instance.report_run_failed(run)  # the run ended: checks run again
    assert isinstance(_schedule_result(instance), dg.RunRequest)

    instance.report_runless_asset_event(dg.AssetMaterialization("v1_reinstated"))
    skip = _schedule_result(instance)
    assert isinstance(skip, dg.SkipReason) and "v2 is rolled back" in skip.skip_message


def test_the_v2_backup_schedule_decides_the_same_way_under_its_own_name():
    assert health_check_decision(None, "why", None, what="v2 backup") == "No v2 backup: why."
    assert health_check_decision("cartrita", "", BUSY, what="v2 backup") == (
        f"No v2 backup while {BUSY} is in flight."
    )
    decision = health_check_decision("cartrita", "", None, what="v2 backup")
    assert isinstance(decision, HealthCheckRun) and decision.tags == {DATABASE_TAG: "cartrita"}
