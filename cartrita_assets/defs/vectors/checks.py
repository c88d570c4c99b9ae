"""Checks that vector search over embeddings_index works: index, self-retrieval, recall, hybrid
and freshness. Each reads the live database only and carries numbers the UI plots over time."""

import dagster as dg
import psycopg

from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.common import table_md
from cartrita_assets.defs.facts import required_metadata, target_database
from cartrita_assets.defs.vectors.assets import embeddings_index
from cartrita_assets.pg.connect import connect
from cartrita_assets.vectors import quality
from cartrita_assets.vectors.sources import Source, sources_from_json


def _result(outcome: quality.Outcome, **numbers: object) -> dg.AssetCheckResult:
    metadata: dict[str, object] = {}
    for key, value in {**outcome.metadata, **numbers}.items():
        if isinstance(value, list) and value and isinstance(value[0], list):
            continue  # tables are added by the caller with their headers
        metadata[key] = value if not isinstance(value, list) else ", ".join(map(str, value))
    metadata["problems"] = "\n".join(outcome.problems) or "none"
    return dg.AssetCheckResult(passed=outcome.passed, metadata=metadata)


def _latest(context: dg.AssetCheckExecutionContext) -> tuple[list[Source], str | None]:
    """The sources and embedder model the latest materialization used."""
    missing = "embeddings_index has not been materialized yet."
    meta = required_metadata(context.instance, "embeddings_index", missing)
    sources = sources_from_json(str(meta["sources_config"]))
    model = meta.get("embedder_model")
    return sources, (str(model) if model is not None else None)


def _conn(context: dg.AssetCheckExecutionContext, v2: V2Target) -> psycopg.Connection:
    return connect(v2.admin(target_database(context)), role="v2 PostgreSQL")


@dg.asset_check(asset=embeddings_index)
def vector_index_is_valid(
    context: dg.AssetCheckExecutionContext, v2: V2Target
) -> dg.AssetCheckResult:
    """Every model the rule gave an ANN index has it: present, valid, of the registered kind,
    limited to that model, and the search query plans through it (EXPLAIN)."""
    with _conn(context, v2) as conn:
        outcome = quality.vector_index_is_valid(conn)
    result = _result(outcome)
    result.metadata["models"] = table_md(
        ["model", "rows", "index", "state", "used by search"], outcome.metadata["models"]
    )
    return result


@dg.asset_check(asset=embeddings_index)
def similarity_search_finds_itself(
    context: dg.AssetCheckExecutionContext, v2: V2Target
) -> dg.AssetCheckResult:
    """similarity_search(stored vector) returns that row first, for 20 sampled rows per model."""
    with _conn(context, v2) as conn:
        outcome = quality.similarity_search_finds_itself(conn)
    return _result(outcome)


@dg.asset_check(asset=embeddings_index)
def recall_at_10_meets_target(
    context: dg.AssetCheckExecutionContext, v2: V2Target
) -> dg.AssetCheckResult:
    """For every model with an ANN index, recall@10 of similarity_search against an exact scan
    has a Wilson 95% lower bound of at least 0.98, on the model's fixed query set (300 stored
    vectors chosen by hash, seeded noise): the same measurement the tuning and the integration
    report make, so they agree on the same data. The tuned effort and latency alongside."""
    with _conn(context, v2) as conn:
        outcome = quality.recall_at_10(conn)
    result = _result(outcome)
    result.metadata["per_model"] = table_md(
        ["model", "rows", "index", "effort", "recall@10", "95% lower bound", "at tuning",
         "p50 ms", "tuning"],
        outcome.metadata["models"],
    )  # fmt: skip
    return result


@dg.asset_check(asset=embeddings_index, blocking=False)
def vectors_are_well_formed(
    context: dg.AssetCheckExecutionContext, v2: V2Target
) -> dg.AssetCheckResult:
    """No zero vectors (cosine undefined), vectors of extreme magnitude, vectors whose distance
    to themselves is undefined, or exact duplicates (ties), per source and model. A warning:
    such vectors are data to look at, and the search checks handle them."""
    with _conn(context, v2) as conn:
        outcome = quality.degenerate_vectors(conn)
    result = _result(outcome)
    return dg.AssetCheckResult(
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            **result.metadata,
            "per_source": table_md(
                quality.DEGENERATE_COLUMNS,
                outcome.metadata["sources"],
            ),  # fmt: skip
        },
    )


@dg.asset_check(asset=embeddings_index)
def hybrid_search_combines_both(
    context: dg.AssetCheckExecutionContext, v2: V2Target
) -> dg.AssetCheckResult:
    """hybrid_search returns both a row only its vector matches and a row only a keyword
    matches (a full join of the two sides, not an intersection), for every model."""
    with _conn(context, v2) as conn:
        outcome = quality.hybrid_search_combines_both(conn)
    result = _result(outcome)
    if outcome.metadata.get("cases"):
        result.metadata["cases"] = table_md(
            ["model", "vector row", "keyword", "vector-only back", "keyword-only back"],
            outcome.metadata["cases"],
        )
    return result


@dg.asset_check(asset=embeddings_index)
def embeddings_are_fresh(
    context: dg.AssetCheckExecutionContext, v2: V2Target
) -> dg.AssetCheckResult:
    """No source row is missing its embedding or has a stale one (text hash or imported vector
    differs), and no embedding is left whose source row is gone."""
    sources, model = _latest(context)
    with _conn(context, v2) as conn:
        outcome = quality.embeddings_are_fresh(conn, sources, model)
    result = _result(outcome)
    result.metadata["per_source"] = table_md(
        ["source", "model", "missing", "stale", "orphaned", "skipped"], outcome.metadata["sources"]
    )
    return result
