"""Running the project's jobs in process and reading their outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from cartrita_assets.definitions import build_definitions
from cartrita_assets.environments import folder_resources
from cartrita_assets.resources.embedder import EmbedderResource
from cartrita_assets.resources.lock import release_run_lock
from support.demo import v1_source
from support.scratch import embedding_cache


def run_job(
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    job: str = "forward_migration_job",
    run_config: dict[str, Any] | None = None,
    extra_assets: list[Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """Execute one job of the project's definitions in process, never raising."""
    defs = build_definitions(resources)
    if extra_assets:
        defs = dg.Definitions.merge(defs, dg.Definitions(assets=extra_assets))
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, run_config=run_config or {}, raise_on_error=False
    )
    release_run_lock(result.run_id)
    return result


def check_results(result: dg.ExecuteInProcessResult, warnings: bool = False) -> dict[str, bool]:
    """check name -> passed, for every check evaluated in the run. Checks that evaluated with
    WARN severity (they report data to look at, such as degenerate vectors, and never mean the
    migrated data is wrong) are left out unless ``warnings``."""
    return {
        e.event_specific_data.check_name: e.event_specific_data.passed  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and (warnings or e.event_specific_data.severity != dg.AssetCheckSeverity.WARN)  # type: ignore[union-attr]
    }


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    """Asset keys materialized in the run."""
    return {
        e.event_specific_data.materialization.asset_key.to_user_string()  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    }


def failure_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    """The error message of every failed step."""
    return [
        e.event_specific_data.error.message  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE"
    ]


def event_log_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """Every stored event of a run, serialised, for leak searches."""
    from dagster._serdes import serialize_value

    records = instance.all_logs(run_id)
    return "\n".join(serialize_value(r) for r in records)


def materialize(
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    *keys: str,
    run_config: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize only ``keys`` (with their checks), as a user does from the UI."""
    defs = build_definitions(resources)
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(k) for k in keys],
        run_config=run_config or {},
        raise_on_error=False,
    )
    release_run_lock(result.run_id)
    return result


def local_resources(demo: Any, v2: Any, folder: Path, base_dir: Path) -> dict[str, Any]:
    """The local environment's resources, wired to ``demo`` (v1), ``v2`` and ``folder``."""
    # the real local model; the run's cache spares re-embedding the same demo texts
    embedder = EmbedderResource(cache_path=str(embedding_cache(base_dir)))
    return folder_resources(folder, v1_source(demo), v2, embedder)
