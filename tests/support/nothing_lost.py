"""The end of every reliability case: nothing lost, and a re-run that reaches every check green."""

from __future__ import annotations

from typing import Any

import dagster as dg

from cartrita_assets.backup.manifest import Manifest
from cartrita_assets.pg import inventory
from cartrita_assets.pg.connect import connect
from cartrita_assets.rollback.steps import backup_reference, compare_v1
from support.runs import check_results, failure_messages, run_job


def forward(
    resources: dict[str, Any], instance: dg.DagsterInstance, **kwargs: Any
) -> dg.ExecuteInProcessResult:
    """``forward_migration_job`` in process (the real local model, its vectors cached)."""
    return run_job(resources, instance, **kwargs)


def v1_tables(resources: dict[str, Any]) -> dict[str, inventory.TableState]:
    """Rows and content hash of every v1 table, measured now (read only)."""
    with connect(resources["v1"].settings().postgres, role="test", read_only=True) as conn:
        return inventory.table_states(conn)


def assert_nothing_lost(resources: dict[str, Any], instance: dg.DagsterInstance) -> None:
    """v1 equals its last backup; a new forward run is all green with v2 equal to v1."""
    rerun = forward(resources, instance)
    assert rerun.success, (failure_messages(rerun), failed_checks(rerun))
    checks = check_results(rerun)
    assert checks and all(checks.values()), checks
    store = resources["backups"]
    latest = max(p for p in store.path().iterdir() if p.is_dir())
    assert (
        compare_v1(
            resources["v1"].settings(), backup_reference(latest, Manifest.load(latest))
        ).any()
        is False
    )


def failed_checks(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    """check name -> metadata of every check that failed in the run (for assertion messages)."""
    return {
        e.event_specific_data.check_name: {  # type: ignore[union-attr]
            k: v.value
            for k, v in e.event_specific_data.metadata.items()  # type: ignore[union-attr]
        }
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed  # type: ignore[union-attr]
    }
