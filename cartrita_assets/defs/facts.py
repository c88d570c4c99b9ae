"""The one reader of recorded facts: what the latest materializations of the assets wrote.

Assets, checks, sensors, the schedule and the CLI read the v1 backup, the v2 database, the Secret
names and the sources embeddings_index used only through here, so they fail the same way (one
clear ``dg.Failure`` naming the asset to materialize) and agree on which v2 database is current.
"""

from typing import Any

import dagster as dg

from cartrita_assets.errors import CartritaError
from cartrita_assets.vectors.sources import Source, sources_from_json

RESTORED_DB = dg.AssetKey("restored_db")
V1_REINSTATED = dg.AssetKey("v1_reinstated")
EMBEDDINGS_INDEX = dg.AssetKey("embeddings_index")
# Runs that write v2 (or take it away): while one is queued or running the automations wait.
WRITING_JOBS = ("forward_migration_job", "rollback_job", "reindex_embeddings_job")
WRITING_ASSETS = {
    RESTORED_DB,
    dg.AssetKey("schema_version"),
    EMBEDDINGS_INDEX,
    V1_REINSTATED,
}
ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _latest_event(instance: dg.DagsterInstance, asset: dg.AssetKey) -> Any:
    event = instance.get_latest_materialization_event(asset)
    return None if event is None or event.asset_materialization is None else event


def latest_metadata(instance: dg.DagsterInstance, asset: str) -> dict[str, Any] | None:
    """The metadata values ``asset``'s latest materialization recorded, or None (never run)."""
    event = _latest_event(instance, dg.AssetKey(asset))
    if event is None:
        return None
    return {name: entry.value for name, entry in event.asset_materialization.metadata.items()}


def required_metadata(instance: dg.DagsterInstance, asset: str, missing: str) -> dict[str, Any]:
    """``asset``'s latest metadata, or a ``dg.Failure`` saying ``missing`` (what to run first)."""
    metadata = latest_metadata(instance, asset)
    if metadata is None:
        raise dg.Failure(description=missing, allow_retries=False)
    return metadata


def restored_database(instance: dg.DagsterInstance) -> str | None:
    """The v2 database restored_db last wrote, or None."""
    database = (latest_metadata(instance, "restored_db") or {}).get("database")
    return None if database is None else str(database)


def target_database(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> str:
    """The v2 database restored_db last wrote (v1's database name), for an asset or a check."""
    database = restored_database(context.instance)
    if database is None:
        raise dg.Failure(
            description="There is no restored database yet: materialize restored_db.",
            allow_retries=False,
        )
    return database


def v2_database(instance: dg.DagsterInstance) -> tuple[str | None, str]:
    """(the v2 database the automations look at, or None and why there is none): the one
    restored_db last wrote, unless v1 was reinstated since."""
    restored = _latest_event(instance, RESTORED_DB)
    if restored is None:
        return None, "there is no restored database yet (restored_db was never materialized)"
    database = restored_database(instance)
    if database is None:
        return None, "restored_db's latest materialization names no database"
    reinstated = _latest_event(instance, V1_REINSTATED)
    if reinstated is not None and reinstated.timestamp > restored.timestamp:
        return None, "v1 was reinstated after the last restore (v2 is rolled back)"
    return database, ""


def run_in_flight(instance: dg.DagsterInstance) -> str | None:
    """A queued or running run that writes v2 (its job and id), or None."""
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE), limit=100):
        if run.job_name in WRITING_JOBS or (
            run.asset_selection is not None and run.asset_selection & WRITING_ASSETS
        ):
            return f"{run.job_name} run {run.run_id[:8]} ({run.status.value.lower()})"
    return None


def latest_sources(instance: dg.DagsterInstance) -> list[dict[str, object]] | None:
    """The sources the latest embeddings_index materialization used, as its run config, or None
    when it was never materialized. Passed back so a sensor's run keeps the same sources (and the
    checks, which read them from that run's metadata, keep checking the same tables)."""
    stored = (latest_metadata(instance, "embeddings_index") or {}).get("sources_config")
    if stored is None:
        return None
    return [source_config(s) for s in sources_from_json(str(stored))]


def source_config(source: Source) -> dict[str, object]:
    """A Source as embeddings_index's SourceConfig run config."""
    return {
        "table": source.table,
        "id_column": source.id_column,
        "text_columns": list(source.text_columns),
        "vector_columns": {v.column: v.model for v in source.vectors},
        "schema_name": source.schema,
        "embed": source.embed,
    }


def short_error(exc: BaseException) -> str:
    """One line about an error for a skip reason: the project's and psycopg's own messages
    (they hold no password), only the type of anything else."""
    import psycopg

    if isinstance(exc, CartritaError | psycopg.Error | dg.Failure):
        text = str(getattr(exc, "description", None) or exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
    return type(exc).__name__
