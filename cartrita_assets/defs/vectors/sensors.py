"""Sensors that keep v2's vector search in line with its sources and its volume.

stale_embeddings_sensor reads ``embedding_source_changes`` (filled by the triggers embeddings_index
installs on its sources; never the source tables) and asks reindex_embeddings_job to compare
only the changed ids. index_volume_sensor compares each model's row count with the count its
index was built on and asks for a rebuild when it moved 2x or the volume rule now picks another
index kind.

Both return a SkipReason, and never raise, when there is nothing to look at yet (no restored
database, v2 rolled back, v2 unreachable, the change log not migrated yet) and while a run that
writes v2 (forward, rollback, reindex) is queued or running: changes wait in the log meanwhile.
Their run config carries the sources the latest embeddings_index materialization used and the
index rule's thresholds from ``CARTRITA_EXACT_BELOW`` / ``CARTRITA_HNSW_MAX_BYTES``, so a sensor's
run never switches to other sources or other thresholds.
"""

import hashlib
import json
from typing import Any

import dagster as dg
import psycopg

from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.facts import latest_sources, run_in_flight, short_error, v2_database
from cartrita_assets.defs.jobs import reindex_embeddings_job
from cartrita_assets.environments import index_rule, int_setting
from cartrita_assets.pg.connect import connect
from cartrita_assets.vectors.changes import PendingChanges, pending_changes, prune_changes
from cartrita_assets.vectors.indexing import choose
from cartrita_assets.vectors.reindex import (
    ModelIndex,
    nothing_changed,
    read_acted,
    read_stale_cursor,
    rebuild_plan,
    stale_run,
)

STALE_INTERVAL = int_setting("CARTRITA_STALE_SENSOR_INTERVAL", 60, minimum=1)
INDEX_INTERVAL = int_setting("CARTRITA_INDEX_SENSOR_INTERVAL", 300, minimum=1)
# More distinct changed ids than this in one tick: one run comparing every row instead (the
# content-hash comparison of a full run is cheaper than listing that many ids in a run config).
MAX_IDS_ENV = "CARTRITA_STALE_MAX_IDS"
MAX_IDS = 5000


def _embeddings_config(**config: Any) -> dict[str, Any]:
    return {"ops": {"embeddings_index": {"config": config}}}


class _Skip(Exception):
    """Stop the tick with a SkipReason."""


def _open_v2(context: dg.SensorEvaluationContext, v2: V2Target) -> psycopg.Connection:
    """A connection to the v2 database, or _Skip saying why there is none to look at now."""
    database, why = v2_database(context.instance)
    if database is None:
        raise _Skip(why)
    busy = run_in_flight(context.instance)
    if busy:
        raise _Skip(f"waiting for {busy} to finish")
    try:
        return connect(v2.admin(database), role="v2 PostgreSQL")
    except Exception as exc:  # any failure to reach v2 is a skip, not a tick error
        raise _Skip(f"v2 PostgreSQL is unreachable ({short_error(exc)})") from None


@dg.sensor(
    job=reindex_embeddings_job,
    minimum_interval_seconds=STALE_INTERVAL,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Re-embeds only the source rows that changed: reads embedding_source_changes (written by "
        "the triggers embeddings_index installs on its sources, never the source tables) and "
        "launches one reindex_embeddings_job run per tick whose source_ids name exactly the "
        "inserted, updated and deleted ids. Cursor: the change log's transaction watermark and the "
        "last change id. Prunes the changes the previous tick already handed to a run. "
        f"Every CARTRITA_STALE_SENSOR_INTERVAL seconds ({STALE_INTERVAL})."
    ),
)
def stale_embeddings_sensor(
    context: dg.SensorEvaluationContext, v2: V2Target
) -> dg.RunRequest | dg.SkipReason:
    after, last_id = read_stale_cursor(context.cursor)
    seen = f"change id {last_id}" if last_id is not None else "the sensor started"
    try:
        with _open_v2(context, v2) as conn:
            if conn.execute(
                "SELECT to_regclass('public.embedding_source_changes') IS NULL"
            ).fetchone()[0]:  # type: ignore[index]
                raise _Skip("v2 has no embedding_source_changes table yet (migration 0007)")
            pruned = prune_changes(conn, after)  # handed to a run by an earlier tick
            pending = pending_changes(conn, after, max_ids=int_setting(MAX_IDS_ENV, MAX_IDS, 1))
    except _Skip as skip:
        return dg.SkipReason(str(skip))
    except psycopg.Error as exc:
        return dg.SkipReason(f"could not read v2's change log ({short_error(exc)})")
    if pruned:
        context.log.info(f"Pruned {pruned} change rows already handed to a run.")
    last = pending.last_id if pending.last_id is not None else last_id
    context.update_cursor(json.dumps({"after_xact": pending.watermark, "last_id": last}))
    if not pending.rows:
        return dg.SkipReason(nothing_changed(pending, seen))
    return _stale_request(pending, latest_sources(context.instance))


def _stale_request(
    pending: PendingChanges, sources: list[dict[str, object]] | None
) -> dg.RunRequest | dg.SkipReason:
    run = stale_run(pending, sources)
    if isinstance(run, str):
        return dg.SkipReason(run)
    config: dict[str, Any] = dict(index_rule())
    if sources is not None:
        config["sources"] = sources
    if run.source_ids is not None:
        config["source_ids"] = run.source_ids
    what = run.what
    return dg.RunRequest(
        run_key=f"source-changes-{pending.first_id}-{pending.last_id}",
        run_config=_embeddings_config(**config),
        tags={
            "cartrita/kind": "reindex",
            "cartrita/trigger": "stale_embeddings_sensor",
            "cartrita/change_ids": f"{pending.first_id}-{pending.last_id}",
            "cartrita/changed_rows": what[:200],
        },
    )


# --- index volume ---------------------------------------------------------------------------


@dg.sensor(
    job=reindex_embeddings_job,
    minimum_interval_seconds=INDEX_INTERVAL,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Rebuilds a model's ANN index when its row count moved 2x either way from the count the "
        "index was built on, or when the volume rule (choose_vector_index, thresholds from "
        "CARTRITA_EXACT_BELOW / CARTRITA_HNSW_MAX_BYTES) now picks another kind: one "
        "reindex_embeddings_job run comparing no source rows (source_ids {}) with rebuild_models. "
        "Cursor: the counts it last acted on, so a rebuild is requested once. Reads only "
        "embeddings and embedding_models; every CARTRITA_INDEX_SENSOR_INTERVAL seconds "
        f"({INDEX_INTERVAL})."
    ),
)
def index_volume_sensor(
    context: dg.SensorEvaluationContext, v2: V2Target
) -> dg.RunRequest | dg.SkipReason:
    acted = read_acted(context.cursor)
    rule = index_rule()
    limits = (rule["exact_below"], rule["hnsw_max_bytes"])
    try:
        with _open_v2(context, v2) as conn:
            models = conn.execute(
                "SELECT m.model, m.dimensions, m.index_kind, m.rows_at_build, coalesce(c.n, 0) "
                "FROM public.embedding_models m LEFT JOIN (SELECT model, count(*) AS n "
                "FROM public.embeddings GROUP BY model) c ON c.model = m.model ORDER BY m.model"
            ).fetchall()
            indexes = [
                ModelIndex(str(m), str(k), int(b), int(n), choose(conn, int(n), int(d), *limits)[0])
                for m, d, k, b, n in models
            ]
    except _Skip as skip:
        return dg.SkipReason(str(skip))
    except psycopg.Error as exc:
        return dg.SkipReason(f"could not read v2's embedding models ({short_error(exc)})")
    plan = rebuild_plan(indexes, acted)
    rebuild, fine, next_cursor = plan.rebuild, plan.fine, plan.cursor
    context.update_cursor(json.dumps(next_cursor, sort_keys=True))
    if not rebuild:
        return dg.SkipReason(
            "no index rebuild needed: " + ("; ".join(fine) if fine else "no embedding models yet")
        )
    for model, why in rebuild.items():
        context.log.info(f"Requesting a rebuild of {model}'s index: {why}")
    config: dict[str, Any] = {"source_ids": {}, "rebuild_models": sorted(rebuild), **rule}
    sources = latest_sources(context.instance)
    if sources is not None:
        config["sources"] = sources
    key = json.dumps({m: next_cursor[m] for m in sorted(rebuild)}, sort_keys=True)
    return dg.RunRequest(
        run_key="index-volume-" + hashlib.sha256(key.encode()).hexdigest()[:16],
        run_config=_embeddings_config(**config),
        tags={
            "cartrita/kind": "reindex",
            "cartrita/trigger": "index_volume_sensor",
            "cartrita/models": ", ".join(sorted(rebuild))[:200],
        },
    )
