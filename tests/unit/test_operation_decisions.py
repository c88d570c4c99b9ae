"""The decisions the sensors, the schedule and the checks take, without servers: Dagster's
context builders, an in-memory instance, and a v2 that is not there (nothing listens on its
ports)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from support.ports import free_port

from cartrita_assets.cluster.v2 import LocalV2Target
from cartrita_assets.defs.cluster.checks import redis_responds
from cartrita_assets.defs.report.alerts import check_failure_alert_sensor
from cartrita_assets.defs.report.checks import integration_suite_passes
from cartrita_assets.defs.report.schedules import build_health_checks_schedule
from cartrita_assets.defs.vectors.sensors import (
    _stale_request,
    index_volume_sensor,
    stale_embeddings_sensor,
)
from cartrita_assets.errors import CartritaError
from cartrita_assets.vectors.changes import PendingChanges

DB = "vec"
SOURCES = [
    {"table": "notes", "schema_name": "public"},
    {"table": "docs", "schema_name": "kb"},
]


@pytest.fixture
def absent_v2(tmp_path: Path) -> LocalV2Target:
    """A v2 whose servers do not run (its passwords exist, nothing listens on its ports)."""
    target = LocalV2Target(
        base_dir=str(tmp_path / "v2"), pg_port=free_port(), redis_port=free_port()
    )
    pg, rds = target.servers()
    for path, secret in ((pg.password_file, "pg-Secret-123"), (rds.password_file, "rd-Secret-456")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secret + "\n")
    return target


def _restored(instance: dg.DagsterInstance, **metadata: object) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization("restored_db", metadata=metadata))


def test_stale_sensor_skips_without_a_database_or_server(instance, tmp_path):
    missing = LocalV2Target(base_dir=str(tmp_path / "v2"), pg_port=free_port(), redis_port=1)
    context = dg.build_sensor_context(instance=instance, resources={"v2": missing})
    skip = stale_embeddings_sensor(context)
    assert "no restored database yet" in skip.skip_message
    instance.report_runless_asset_event(
        dg.AssetMaterialization("restored_db", metadata={"database": DB})
    )
    skip = stale_embeddings_sensor(context)
    assert skip.skip_message.startswith("v2 PostgreSQL is unreachable"), skip.skip_message
    volume = index_volume_sensor(context)
    assert volume.skip_message.startswith("v2 PostgreSQL is unreachable")
    instance.add_run(
        dg.DagsterRun(job_name="reindex_embeddings_job", status=dg.DagsterRunStatus.STARTED)
    )
    skip = stale_embeddings_sensor(context)
    assert skip.skip_message.startswith("waiting for reindex_embeddings_job run")

    # too many changed ids for one run config: one run comparing every row instead
    backlog = PendingChanges(after=0, watermark=9, rows=9000, first_id=1, last_id=9000,
                             ids=None, distinct=9000)  # fmt: skip
    request = _stale_request(backlog, [{"table": "t", "schema_name": "public"}])
    config = request.run_config["ops"]["embeddings_index"]["config"]
    assert "source_ids" not in config and config["sources"] == [
        {"table": "t", "schema_name": "public"}
    ]


def test_check_failure_alert_sensor_reports_a_failed_check_of_a_successful_run(
    instance, monkeypatch, tmp_path
):
    monkeypatch.setenv("CARTRITA_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("CARTRITA_ALERT_WEBHOOK_URL", raising=False)

    @dg.asset
    def thing() -> None:
        """A stand-in asset."""

    @dg.asset_check(asset=thing)
    def thing_is_right() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False, metadata={"problems": "3 rows are wrong"})

    result = dg.materialize([thing, thing_is_right], instance=instance)
    assert result.success
    context = dg.build_run_status_sensor_context(
        sensor_name="check_failure_alert_sensor",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_success_event(),
    )
    check_failure_alert_sensor(context)
    (line,) = (tmp_path / "state" / "alerts" / "alerts.jsonl").read_text().splitlines()
    alert = json.loads(line)
    assert (alert["check"], alert["problems"], alert["severity"]) == (
        "thing_is_right", "3 rows are wrong", "ERROR"
    )  # fmt: skip


def test_health_schedule_is_hourly_by_default_and_follows_the_env(disk_instance, monkeypatch):
    instance = disk_instance  # a schedule's context needs an instance that has a reference
    monkeypatch.delenv("CARTRITA_HEALTH_CHECK_CRON", raising=False)
    schedule = build_health_checks_schedule()
    assert schedule.cron_schedule == "0 * * * *" and schedule.job_name == "v2_health_checks_job"
    monkeypatch.setenv("CARTRITA_HEALTH_CHECK_CRON", "*/15 * * * *")
    assert build_health_checks_schedule().cron_schedule == "*/15 * * * *"
    monkeypatch.setenv("CARTRITA_HEALTH_CHECK_CRON", "every hour")
    with pytest.raises(CartritaError, match="CARTRITA_HEALTH_CHECK_CRON"):
        build_health_checks_schedule()
    skip = schedule(dg.build_schedule_context(instance=instance))
    assert isinstance(skip, dg.SkipReason) and "no restored database" in skip.skip_message
    instance.report_runless_asset_event(
        dg.AssetMaterialization("restored_db", metadata={"database": DB})
    )
    assert isinstance(schedule(dg.build_schedule_context(instance=instance)), dg.RunRequest)


def test_sensors_skip_after_a_rollback_and_without_a_database_name(instance, absent_v2):
    context = dg.build_sensor_context(instance=instance, resources={"v2": absent_v2})
    _restored(instance)  # a restored_db materialization that names no database
    for sensor in (stale_embeddings_sensor, index_volume_sensor):
        skip = sensor(context)
        assert isinstance(skip, dg.SkipReason)
        assert skip.skip_message == "restored_db's latest materialization names no database"
    _restored(instance, database=DB)
    instance.report_runless_asset_event(dg.AssetMaterialization("v1_reinstated"))
    for sensor in (stale_embeddings_sensor, index_volume_sensor):
        skip = sensor(context)
        assert isinstance(skip, dg.SkipReason)
        assert skip.skip_message == "v1 was reinstated after the last restore (v2 is rolled back)"
    _restored(instance, database=DB)  # a new restore after the rollback: v2 is looked at again
    skip = stale_embeddings_sensor(context)
    assert skip.skip_message.startswith("v2 PostgreSQL is unreachable"), skip.skip_message
    assert "pg-Secret-123" not in skip.skip_message


def test_sensors_wait_for_every_run_that_writes_v2(instance, absent_v2):
    context = dg.build_sensor_context(instance=instance, resources={"v2": absent_v2})
    _restored(instance, database=DB)
    instance.add_run(dg.DagsterRun(job_name="some_report_job", status=dg.DagsterRunStatus.STARTED))
    assert stale_embeddings_sensor(context).skip_message.startswith("v2 PostgreSQL is unreachable")
    for job, status in (
        ("forward_migration_job", dg.DagsterRunStatus.CANCELING),
        ("rollback_job", dg.DagsterRunStatus.STARTING),
    ):
        run = dg.DagsterRun(job_name=job, status=status)
        instance.add_run(run)
        for sensor in (stale_embeddings_sensor, index_volume_sensor):
            skip = sensor(context)
            assert skip.skip_message == (
                f"waiting for {job} run {run.run_id[:8]} ({status.value.lower()}) to finish"
            ), skip.skip_message
        instance.delete_run(run.run_id)


def test_stale_request_names_exactly_the_changed_ids_of_embedded_tables(monkeypatch):
    monkeypatch.setenv("CARTRITA_EXACT_BELOW", "7")
    monkeypatch.delenv("CARTRITA_HNSW_MAX_BYTES", raising=False)
    pending = PendingChanges(after=3, watermark=9, rows=4, first_id=11, last_id=14,
                             ids={"notes": ["1", "2"], "kb.docs": ["x"], "gone": ["5"]},
                             distinct=4)  # fmt: skip
    request = _stale_request(pending, SOURCES)
    assert isinstance(request, dg.RunRequest)
    config = request.run_config["ops"]["embeddings_index"]["config"]
    # a table embeddings_index no longer embeds is left out; the index rule comes from the env
    assert config["source_ids"] == {"notes": ["1", "2"], "kb.docs": ["x"]}
    assert config["sources"] == SOURCES and config["exact_below"] == 7
    assert request.run_key == "source-changes-11-14"
    assert request.tags["cartrita/change_ids"] == "11-14"
    assert request.tags["cartrita/changed_rows"] == "notes: 2, kb.docs: 1"
    # never materialized: no sources to keep, every changed table is named
    unknown = _stale_request(pending, None).run_config["ops"]["embeddings_index"]["config"]
    assert "sources" not in unknown and set(unknown["source_ids"]) == {"notes", "kb.docs", "gone"}
    only_gone = replace_ids(pending, {"gone": ["5"], "old": ["6"]})
    skip = _stale_request(only_gone, SOURCES)
    assert isinstance(skip, dg.SkipReason)
    assert skip.skip_message == (
        "4 changes (ids 11-14) are all of tables embeddings_index no longer embeds (gone, old)"
    )


def replace_ids(pending: PendingChanges, ids: dict[str, list[str]]) -> PendingChanges:
    from dataclasses import replace

    return replace(pending, ids=ids)


def test_stale_sensor_tolerates_a_garbled_cursor(instance, absent_v2):
    for cursor in ("not json", "[1, 2]", '{"after_xact": "x"}'):
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"v2": absent_v2}
        )
        skip = stale_embeddings_sensor(context)
        assert skip.skip_message.startswith("there is no restored database yet")


def _report(instance: dg.DagsterInstance, folder: Path, cases: list[dict[str, object]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps({"cases": cases}))
    instance.report_runless_asset_event(
        dg.AssetMaterialization("integration_report", metadata={"report_dir": str(folder)})
    )


def test_integration_suite_check_fails_on_any_failed_case_or_no_report(instance, tmp_path):
    context = dg.build_asset_check_context(instance=instance)
    missing = integration_suite_passes(context)
    assert missing.passed is False and missing.metadata["problem"].value == "no report yet"

    ok = {"suite": "vector", "name": "knn", "passed": True, "detail": "10 rows"}
    bad = {"suite": "migration", "name": "checksums", "passed": False, "detail": "0003 edited"}
    _report(instance, tmp_path / "r1", [ok, bad])
    failed = integration_suite_passes(context)
    assert failed.passed is False
    assert failed.metadata["failed"].value == 1
    assert failed.metadata["failures"].value == "migration/checksums: 0003 edited"

    _report(instance, tmp_path / "r2", [])  # an empty report proves nothing
    assert integration_suite_passes(context).passed is False

    _report(instance, tmp_path / "r3", [ok])
    passed = integration_suite_passes(context)
    assert passed.passed is True and passed.metadata["cases"].value == 1
    assert passed.metadata["report"].value == str(tmp_path / "r3" / "report.md")


def test_redis_check_fails_without_the_password_when_v2_redis_is_down(absent_v2):
    result = redis_responds(dg.build_asset_check_context(), v2=absent_v2)
    assert result.passed is False
    assert result.metadata["error"].value == "ConnectionError"
    assert "rd-Secret-456" not in json.dumps({k: str(v.value) for k, v in result.metadata.items()})
