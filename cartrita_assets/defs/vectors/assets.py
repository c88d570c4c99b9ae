"""embeddings_index: every source row embedded once per model, indexed by volume."""

from collections.abc import Callable
from dataclasses import replace

import dagster as dg
import psycopg
import redis
from pydantic import Field

from cartrita_assets import redis_copy
from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.common import OWNERS, progress, table_md, user_errors
from cartrita_assets.defs.facts import target_database
from cartrita_assets.defs.schema.assets import schema_version
from cartrita_assets.environments import cache_key_patterns
from cartrita_assets.errors import CartritaError
from cartrita_assets.pg.connect import connect
from cartrita_assets.redis_copy.client import client_for
from cartrita_assets.resources.embedder import EmbedderResource
from cartrita_assets.vectors import quality, recall, tuning
from cartrita_assets.vectors.changes import install_change_triggers
from cartrita_assets.vectors.indexing import (
    EXACT_BELOW,
    HNSW_MAX_BYTES,
    IndexDecision,
    ensure_indexes,
)
from cartrita_assets.vectors.invalidation import Invalidation, describe, invalidate
from cartrita_assets.vectors.sources import (
    Source,
    VectorColumn,
    discover_sources,
    sources_json,
    validate_sources,
)
from cartrita_assets.vectors.sync import SyncCounts, check_embedder, sync_source

Log = Callable[[str], None]


class SourceConfig(dg.Config):
    """One table to embed."""

    table: str = Field(description="Table name, unquoted (any case, spaces allowed).")
    id_column: str = Field(description="Its unique key (integer, uuid or text).")
    text_columns: list[str] = Field(description="Columns joined (blank line between) and embedded.")
    vector_columns: dict[str, str] = Field(
        default_factory=dict,
        description="Existing vector columns to import as they are: column -> model name. "
        "Native vector columns or text like '[0.1,0.2]'.",
    )
    schema_name: str = Field(default="public", description="The table's schema.")
    embed: bool = Field(default=True, description="Also embed the text with the embedder.")

    def to_source(self) -> Source:
        return Source(
            table=self.table,
            id_column=self.id_column,
            text_columns=tuple(self.text_columns),
            vectors=tuple(VectorColumn(c, m) for c, m in self.vector_columns.items()),
            schema=self.schema_name,
            embed=self.embed,
        )


class EmbeddingsConfig(dg.Config):
    """Which sources, which rows, and the index rule's thresholds."""

    sources: list[SourceConfig] | None = Field(
        default=None,
        description="Tables to embed. Empty: the Cartrita v1 tables present (knowledge entries' "
        "title and content, conversation and chat messages, conversations, journal entries, "
        "tool descriptions), importing their existing vectors.",
    )
    source_ids: dict[str, list[str]] | None = Field(
        default=None,
        description="Only these source ids, per source table (what the stale_embeddings_sensor "
        "asks for). Empty: every row is compared by its content hash.",
    )
    exact_below: int = Field(
        default=EXACT_BELOW, description="Below this many rows a model gets no ANN index."
    )
    hnsw_max_bytes: int = Field(
        default=HNSW_MAX_BYTES,
        description="HNSW while a model's vectors fit in this many bytes, IVFFlat above.",
    )
    rebuild_indexes: bool = Field(
        default=False, description="Rebuild every ANN index even if the rule's choice is unchanged."
    )
    rebuild_models: list[str] = Field(
        default=[],
        description="Rebuild these models' indexes even if the rule's choice is unchanged "
        "(what the index_volume_sensor asks for).",
    )
    recall_target: float = Field(
        default=recall.TARGET,
        description="Recall@10 each model's search must reach at the 95% lower bound; its "
        "search effort is tuned to it after each index build.",
    )
    search_budget_ms: float = Field(
        default=tuning.BUDGET_MS,
        description="Latency budget (p50, ms) of one search while tuning the effort.",
    )


@dg.asset(
    group_name="vectors",
    kinds={"postgres", "pgvector"},
    owners=OWNERS,
    deps=[schema_version],
)
def embeddings_index(
    context: dg.AssetExecutionContext,
    config: EmbeddingsConfig,
    v2: V2Target,
    embedder: EmbedderResource,
) -> dg.MaterializeResult:
    """The unified embeddings table in line with its sources: new and changed rows (by the
    SHA256 of model + normalised text) embedded, rows whose source is gone deleted, v1's own
    vectors imported unchanged; then one ANN index per model chosen by volume (exact scan,
    HNSW or IVFFlat), built concurrently, and ANALYZE. The application's Redis keys derived from
    rows whose embedding was replaced or deleted are unlinked (CARTRITA_CACHE_KEY_PATTERNS)."""
    log = progress(context)
    with user_errors():
        database = target_database(context)
        model = embedder.get_embedder(log=log)
        with connect(v2.admin(database), role="v2 PostgreSQL") as conn:
            check_embedder(conn, model)
            if config.sources:
                sources = [s.to_source() for s in config.sources]
            else:
                sources = discover_sources(conn)
                log(f"Sources (discovered): {', '.join(s.name for s in sources) or 'none'}")
            validate_sources(conn, sources, check_unique=config.source_ids is None)
            install_change_triggers(conn, sources)
            counts: list[SyncCounts] = []
            for source in sources:
                ids = None
                if config.source_ids is not None:
                    if source.name not in config.source_ids:
                        continue
                    ids = config.source_ids[source.name]
                counts += sync_source(conn, source, model, log, ids=ids)
            decisions = ensure_indexes(
                conn,
                log,
                exact_below=config.exact_below,
                hnsw_max_bytes=config.hnsw_max_bytes,
                force=config.rebuild_indexes,
                force_models=config.rebuild_models,
            )
            tunings = tuning.tune_models(
                conn,
                _to_tune(conn, decisions),
                log,
                target=config.recall_target,
                budget_ms=config.search_budget_ms,
            )
            degenerate = quality.degenerate_vectors(conn)
            total = conn.execute("SELECT count(*) FROM public.embeddings").fetchone()
        cache = _invalidate_caches(v2, counts, log)
    totals = {
        k: sum(getattr(c, k) for c in counts)
        for k in ("inserted", "updated", "unchanged", "deleted", "skipped")
    }
    skipped = [
        f"{c.source} / {c.model}: "
        + ", ".join(f"{n} {r}" for r, n in c.skipped_reasons.items())
        + f" (e.g. ids {', '.join(c.skipped_examples)})"
        for c in counts
        if c.skipped
    ]
    return dg.MaterializeResult(
        metadata={
            "database": database,
            "embedder": f"{model.model} ({model.dimensions} dims)",
            "embedder_model": model.model,
            "texts_from_cache": getattr(model, "hits", 0),
            "texts_embedded_now": getattr(model, "misses", totals_embedded(counts)),
            "sources": dg.MetadataValue.json({"sources": _sources_meta(sources)}),
            "sources_config": sources_json(sources),
            **totals,
            "skipped_details": "\n".join(skipped) or "none",
            **cache,
            "dagster/row_count": int(total[0]) if total else 0,
            "changes": table_md(
                [
                    "source",
                    "model",
                    "origin",
                    "inserted",
                    "updated",
                    "unchanged",
                    "deleted",
                    "skipped",
                    "seconds",
                ],
                [
                    [
                        c.source,
                        c.model,
                        c.origin,
                        c.inserted,
                        c.updated,
                        c.unchanged,
                        c.deleted,
                        c.skipped,
                        round(c.seconds, 2),
                    ]
                    for c in counts
                ],
            ),  # fmt: skip
            "indexes": table_md(
                ["model", "rows", "index", "params", "action", "build s"],
                [d.as_row() for d in decisions],
            ),
            "index_reasons": "\n".join(f"{d.model}: {d.reason}" for d in decisions) or "none",
            "index_build_seconds": round(sum(d.seconds for d in decisions), 2),
            "search_effort": table_md(
                ["model", "index", "effort", "recall@10", "95% lower bound", "p50 ms", "why"],
                [t.as_row() for t in tunings],
            ),
            "search_effort_shortfalls": sum(1 for t in tunings if not t.passed),
            "degenerate_vectors": table_md(
                quality.DEGENERATE_COLUMNS,
                degenerate.metadata["sources"],  # type: ignore[arg-type]
            ),  # fmt: skip
            **{
                k: degenerate.metadata[k]
                for k in (
                    "zero_vectors",
                    "extreme_magnitude",
                    "undefined_distance",
                    "duplicate_vectors",
                )
            },  # fmt: skip
        }
    )


def _invalidate_caches(v2: V2Target, counts: list[SyncCounts], log: Log) -> dict[str, object]:
    """Unlink the application's Redis keys derived from rows whose embedding was replaced or
    deleted (the rule: ``CARTRITA_CACHE_KEY_PATTERNS``, see vectors/invalidation.py)."""
    rule = cache_key_patterns()
    changed: dict[str, set[str]] = {}
    for c in counts:
        changed.setdefault(c.source, set()).update(c.changed_ids)
    done = Invalidation()
    if any(ids and rule.get(source) for source, ids in changed.items()):
        settings = v2.redis()
        try:
            dbs = redis_copy.databases_in_use(client_for(settings))
            done = invalidate(lambda db: client_for(replace(settings, db=db)), dbs, rule, changed)
        except redis.RedisError as exc:
            raise CartritaError(
                f"The embeddings changed, but the cache keys derived from the changed rows could "
                f"not be invalidated in v2 Redis at {settings.masked_url()} "
                f"({type(exc).__name__}); their rows: {_ids_text(changed, rule)}. Bring v2 Redis "
                "back, then unlink those keys (the rule is in CARTRITA_CACHE_KEY_PATTERNS)."
            ) from None
        log(f"Cache invalidation: {done.total} keys unlinked for {sum(done.rows.values())} "
            f"changed rows ({describe(rule)})")  # fmt: skip
    return {
        "cache_key_patterns": describe(rule),
        "cache_keys_invalidated": done.total,
        "cache_keys_scanned": done.scanned,
        "cache_invalidation": table_md(
            ["source", "changed rows", "keys unlinked"],
            [[s, done.rows[s], done.unlinked.get(s, 0)] for s in sorted(done.rows)],
        ),
    }


def _ids_text(changed: dict[str, set[str]], rule: dict[str, object]) -> str:
    shown = [f"{s}: {', '.join(sorted(ids)[:20])}" for s, ids in changed.items() if rule.get(s)]
    return "; ".join(shown)


def totals_embedded(counts: list[SyncCounts]) -> int:
    return sum(c.inserted + c.updated for c in counts if "embedded" in c.origin)


def _sources_meta(sources: list[Source]) -> list[dict[str, object]]:
    return [s.to_dict() for s in sources]


def _to_tune(conn: psycopg.Connection, decisions: list[IndexDecision]) -> list[tuple[str, str]]:
    """Models whose index was just built, or never tuned for the index they have."""
    untuned = {
        str(r[0])
        for r in conn.execute(
            "SELECT model FROM public.embedding_models WHERE search_tuned_at IS NULL "
            "OR search_tuned_at < built_at"
        ).fetchall()
    }
    return [(d.model, d.kind) for d in decisions if d.action == "built" or d.model in untuned]
