"""What the sensors and the schedule look at before acting: the v2 database, runs in flight, the
sources embeddings_index last used, and their settings from the environment."""

import os

import dagster as dg

from cartrita_assets.errors import CartritaError
from cartrita_assets.vectors.indexing import EXACT_BELOW, HNSW_MAX_BYTES
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


def int_env(name: str, default: int, minimum: int = 0) -> int:
    """``$name`` as a whole number (default when unset or empty).

    Raises:
        CartritaError: naming the variable when it is not a whole number >= ``minimum``.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise CartritaError(f"{name} must be a whole number >= {minimum}, got {raw!r}.")
    return int(raw)


def index_rule() -> dict[str, int]:
    """The index rule's thresholds the automations pass to embeddings_index:
    ``CARTRITA_EXACT_BELOW`` and ``CARTRITA_HNSW_MAX_BYTES`` (defaults: the asset's)."""
    return {
        "exact_below": int_env("CARTRITA_EXACT_BELOW", EXACT_BELOW),
        "hnsw_max_bytes": int_env("CARTRITA_HNSW_MAX_BYTES", HNSW_MAX_BYTES, minimum=1),
    }


def v2_database(instance: dg.DagsterInstance) -> tuple[str | None, str]:
    """(the v2 database restored_db last wrote, or None and why there is none to look at)."""
    restored = instance.get_latest_materialization_event(RESTORED_DB)
    if restored is None or restored.asset_materialization is None:
        return None, "there is no restored database yet (restored_db was never materialized)"
    database = restored.asset_materialization.metadata.get("database")
    if database is None:
        return None, "restored_db's latest materialization names no database"
    reinstated = instance.get_latest_materialization_event(V1_REINSTATED)
    if reinstated is not None and reinstated.timestamp > restored.timestamp:
        return None, "v1 was reinstated after the last restore (v2 is rolled back)"
    return str(database.value), ""


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
    event = instance.get_latest_materialization_event(EMBEDDINGS_INDEX)
    if event is None or event.asset_materialization is None:
        return None
    stored = event.asset_materialization.metadata.get("sources_config")
    if stored is None:
        return None
    return [source_config(s) for s in sources_from_json(str(stored.value))]


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
