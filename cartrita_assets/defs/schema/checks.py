"""Checks that v2's schema is exactly what sql/migrations describes and what the guide promises."""

import dagster as dg

from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.facts import target_database
from cartrita_assets.defs.schema.assets import history_rows, schema_version
from cartrita_assets.pg.connect import connect

# What the guide promises, with the argument lists it shows (identity arguments, in order).
GUIDE_FUNCTIONS = {
    "upsert_embedding": "p_source_table text, p_source_id text, p_content text, "
    "p_embedding vector, p_model text, p_metadata jsonb",
    "similarity_search": "query_embedding vector, match_threshold double precision, "
    "match_count integer, source_filter text, model_filter text, record_metrics boolean",
    "hybrid_search": "query_text text, query_embedding vector, vector_weight double precision, "
    "keyword_weight double precision, match_threshold double precision, match_count integer, "
    "source_filter text, model_filter text, record_metrics boolean",
    "hybrid_search_rrf": "query_text text, query_embedding vector, match_count integer, "
    "rrf_k integer, source_filter text, model_filter text, record_metrics boolean",
    "rebuild_vector_indexes": "exact_below bigint, hnsw_max_bytes bigint",
}
GUIDE_RELATIONS = {
    "schema_migrations": "r",
    "embeddings": "r",
    "embedding_models": "r",
    "search_performance_metrics": "r",
    "vector_search_stats": "v",
}


@dg.asset_check(asset=schema_version, blocking=True)
def migration_checksums_match(
    context: dg.AssetCheckExecutionContext, v2: V2Target
) -> dg.AssetCheckResult:
    """Every applied migration's recorded sha256 equals its file's, and no applied version is
    missing from sql/migrations."""
    rows = history_rows(v2, target_database(context))
    bad = [r for r in rows if r["state"] in ("CHECKSUM MISMATCH", "NO FILE (database is newer)")]
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={
            "migrations": len(rows),
            "drifted": len(bad),
            "details": ", ".join(f"{r['version']} {r['state']}" for r in bad) or "no drift",
        },
    )


@dg.asset_check(asset=schema_version, blocking=True)
def all_migrations_applied(
    context: dg.AssetCheckExecutionContext, v2: V2Target
) -> dg.AssetCheckResult:
    """No migration file is pending or left failed."""
    rows = history_rows(v2, target_database(context))
    pending = [r for r in rows if r["state"] != "applied"]
    return dg.AssetCheckResult(
        passed=not pending,
        metadata={
            "applied": len(rows) - len(pending),
            "pending": len(pending),
            "details": ", ".join(f"{r['version']} {r['state']}" for r in pending) or "all applied",
        },
    )


@dg.asset_check(asset=schema_version, blocking=True)
def guide_objects_exist(
    context: dg.AssetCheckExecutionContext, v2: V2Target
) -> dg.AssetCheckResult:
    """Every function, table and view the migration guide promises exists in v2, the functions
    with the guide's argument lists."""
    with connect(v2.admin(target_database(context)), role="v2 PostgreSQL") as conn:
        # a set: hybrid_search and hybrid_search_rrf also have overloads taking a preset name
        functions = set(
            conn.execute(
                "SELECT p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p "
                "WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY(%s)",
                (list(GUIDE_FUNCTIONS),),
            ).fetchall()
        )
        relations = dict(
            conn.execute(
                "SELECT c.relname, c.relkind::text FROM pg_class c "
                "WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(%s)",
                (list(GUIDE_RELATIONS),),
            ).fetchall()
        )
    missing = [f"function {n}({a})" for n, a in GUIDE_FUNCTIONS.items() if (n, a) not in functions]
    missing += [
        f"{'view' if k == 'v' else 'table'} {n}"
        for n, k in GUIDE_RELATIONS.items()
        if relations.get(n) != k
    ]
    return dg.AssetCheckResult(
        passed=not missing,
        metadata={
            "objects_expected": len(GUIDE_FUNCTIONS) + len(GUIDE_RELATIONS),
            "missing_or_different": len(missing),
            "details": "; ".join(missing) or "all present",
        },
    )
