"""Bring ``embeddings`` in line with its sources, touching only what changed.

For one (source, model) the wanted rows are computed in SQL into a temporary table: each source
row's id as text, its text, ``embedding_content_hash(model, text)`` (sha256 of the model and the
whitespace-normalised text) and, for imported models, v1's vector. Against the stored rows:

- stored rows whose source row is gone (or now has no text/vector) are deleted;
- imported vectors are inserted or updated in one statement where the hash or vector differs;
- rows to embed (new, or hash changed) are read in keyset pages, embedded in batches, copied in
  (binary COPY) and merged, one transaction per batch: a run that dies keeps its finished batches
  and the next run continues from there;
- everything else is unchanged and not rewritten.

A row the database refuses (e.g. a vector of another dimension) is skipped and reported by id,
never failing the other rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from cartrita_assets.embeddings.embedders import Embedder
from cartrita_assets.errors import CartritaError
from cartrita_assets.vectors.sources import Source

Log = Callable[[str], None]
PAGE_ROWS = 1000
REPORT_EVERY = 5.0  # seconds between progress lines while embedding
# What one bad row can raise (a value the table refuses); anything else is a real error.
ROW_ERRORS = (
    psycopg.errors.DataError,
    psycopg.errors.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
)


class EmbeddingModelMismatch(CartritaError):
    """The embedder's model produces another dimension than the one stored for that model."""


@dataclass
class SyncCounts:
    """What one (source, model) sync did."""

    source: str
    model: str
    origin: str  # "embedded", "imported" or "imported+embedded"
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    skipped_examples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # source ids whose stored embedding was replaced or deleted (not first embedded): what the
    # application's caches derived from those rows must forget
    changed_ids: list[str] = field(default_factory=list)

    def skip(self, reason: str, count: int, examples: Sequence[str] = ()) -> None:
        if count <= 0:
            return
        self.skipped += count
        self.skipped_reasons[reason] = self.skipped_reasons.get(reason, 0) + count
        self.skipped_examples.extend(list(examples)[: max(0, 5 - len(self.skipped_examples))])

    @property
    def touched(self) -> int:
        return self.inserted + self.updated + self.deleted

    def written(self, flags: Sequence[tuple[bool, str]]) -> None:
        """Count an upsert's RETURNING rows: (inserted?, source_id)."""
        self.inserted += sum(1 for inserted, _ in flags if inserted)
        self.updated += sum(1 for inserted, _ in flags if not inserted)
        self.changed_ids += [sid for inserted, sid in flags if not inserted]


@dataclass(frozen=True)
class ModelPlan:
    """One model a source feeds: the vector columns imported into it, and whether to embed."""

    model: str
    imports: tuple[str, ...]
    embed: bool

    @property
    def origin(self) -> str:
        if self.imports and self.embed:
            return "imported+embedded"
        return "imported" if self.imports else "embedded"


def plans_for(source: Source, embedder_model: str | None) -> list[ModelPlan]:
    """The models a source feeds: each imported vector column's model, plus the embedder's."""
    by_model: dict[str, list[str]] = {}
    for v in source.vectors:
        by_model.setdefault(v.model, []).append(v.column)
    plans = [
        ModelPlan(m, tuple(cols), source.embed and m == embedder_model)
        for m, cols in by_model.items()
    ]
    if source.embed and embedder_model and embedder_model not in by_model:
        plans.append(ModelPlan(embedder_model, (), True))
    return plans


def registered_dimensions(conn: psycopg.Connection, model: str) -> int | None:
    row = conn.execute(
        "SELECT dimensions FROM public.embedding_models WHERE model = %s", (model,)
    ).fetchone()
    return int(row[0]) if row else None


def check_embedder(conn: psycopg.Connection, embedder: Embedder) -> None:
    """Refuse an embedder whose dimension differs from the one stored for its model name."""
    dims = registered_dimensions(conn, embedder.model)
    if dims is not None and dims != embedder.dimensions:
        raise EmbeddingModelMismatch(
            f"Model {embedder.model!r} is stored with {dims} dimensions but the embedder makes "
            f"{embedder.dimensions}. Use a new model name for a new dimension (or delete that "
            "model's rows from embeddings and embedding_models first)."
        )


def _vector_expr(
    conn: psycopg.Connection, source: Source, column: str, copied_as: str
) -> sql.Composable:
    """The vector in ``source_rows``'s column ``copied_as`` (a copy of the source's ``column``)."""
    typ = conn.execute(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attname = %s",
        (source.relation().as_string(conn), column),
    ).fetchone()
    ident = sql.SQL("s.{}").format(sql.Identifier(copied_as))
    if typ and typ[0].startswith(("vector", "halfvec")):
        return sql.SQL("{}::vector").format(ident)
    return sql.SQL("public.parse_vector_or_null({}::text)").format(ident)


def _restrict(source: Source, ids: Sequence[str] | None) -> sql.Composable:
    if ids is None:
        return sql.SQL("true")
    return sql.SQL("s.{}::text = ANY({})").format(
        sql.Identifier(source.id_column), sql.Literal(list(ids))
    )


def _copied_column(source: Source, column: str) -> str:
    """The name ``source_rows`` gives a vector column (never one of its own column names)."""
    return f"vector_{[v.column for v in source.vectors].index(column)}"


@contextmanager
def source_rows(
    conn: psycopg.Connection, source: Source, ids: Sequence[str] | None
) -> Iterator[None]:
    """Temp table ``source_rows`` while the block runs: each source row (only ``ids`` if given)
    once, with its id as text, its text, that text normalised for hashing and a copy of each vector
    column. :func:`build_wanted` reads it for every model the source feeds, so a long text is
    normalised once, not once per model (the normalisation is most of a content hash's cost)."""
    vectors = [
        sql.SQL("s.{} AS {}").format(
            sql.Identifier(v.column), sql.Identifier(_copied_column(source, v.column))
        )
        for v in source.vectors
    ]
    rows = sql.SQL(
        "SELECT x.*, public.embedding_normalized_content(x.content) AS normalized FROM ("
        "SELECT s.{id}::text AS source_id, {text} AS content{vectors} FROM {rel} s "
        "WHERE {where}) x"
    ).format(
        id=sql.Identifier(source.id_column),
        text=source.text_expression("s"),
        vectors=sql.SQL("").join(sql.SQL(", {}").format(v) for v in vectors),
        rel=source.relation(),
        where=_restrict(source, ids),
    )  # fmt: skip
    conn.execute("DROP TABLE IF EXISTS pg_temp.source_rows")
    # stored compressed like any table: the copies build_wanted makes reuse the compressed values
    conn.execute(sql.SQL("CREATE TEMP TABLE source_rows AS {}").format(rows))
    try:
        yield
    finally:
        conn.execute("DROP TABLE IF EXISTS pg_temp.source_rows")


def build_wanted(
    conn: psycopg.Connection, source: Source, plan: ModelPlan, counts: SyncCounts
) -> None:
    """Fill temp table ``wanted`` for (source, plan.model) from ``source_rows`` (see
    :func:`source_rows`); record what had to be skipped."""
    conn.execute("DROP TABLE IF EXISTS pg_temp.wanted")
    conn.execute(
        "CREATE TEMP TABLE wanted (source_id text PRIMARY KEY, content text NOT NULL, "
        "h char(64) NOT NULL, vec vector)"
    )
    dims = registered_dimensions(conn, plan.model)
    for column in plan.imports:
        vec = _vector_expr(conn, source, column, _copied_column(source, column))
        with conn.transaction():
            conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE imported ON COMMIT DROP AS "
                    "SELECT i.source_id, i.content, i.normalized, i.vec, i.present, "
                    # pgvector refuses NaN and infinite components: such a vector is data to
                    # report by its own reason, not a malformed one (only asked of the values
                    # that did not parse; OFFSET 0 keeps each vector parsed once)
                    "(i.present AND i.vec IS NULL AND i.raw ~* "
                    "'(^|[[,])\\s*[+-]?(nan|inf|infinity)\\s*(,|]|$)') AS nonfinite "
                    "FROM (SELECT s.source_id, s.content, s.normalized, {vec} AS vec, "
                    "s.{col} IS NOT NULL AS present, s.{col}::text AS raw "
                    "FROM pg_temp.source_rows s OFFSET 0) i"
                ).format(vec=vec, col=sql.Identifier(_copied_column(source, column)))
            )
            if dims is None:  # a new model: the dimension most of its vectors have
                row = conn.execute(
                    "SELECT vector_dims(vec) FROM imported WHERE vec IS NOT NULL "
                    "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
                ).fetchone()
                dims = int(row[0]) if row else None
            for reason, nonfinite in (("not a vector", False), ("non-finite values", True)):
                bad = conn.execute(
                    "SELECT source_id FROM imported WHERE present AND vec IS NULL "
                    "AND nonfinite = %s ORDER BY 1",
                    (nonfinite,),
                ).fetchall()
                counts.skip(f"{column}: {reason}", len(bad), [r[0] for r in bad])
            wrong = conn.execute(
                "SELECT source_id FROM imported WHERE vec IS NOT NULL AND vector_dims(vec) <> %s "
                "ORDER BY 1",
                (dims,),
            ).fetchall()
            counts.skip(f"{column}: not {dims} dimensions", len(wrong), [r[0] for r in wrong])
            conn.execute(
                "INSERT INTO wanted SELECT source_id, content, "
                "public.embedding_normalized_hash(%s, normalized), vec FROM imported "
                "WHERE vec IS NOT NULL AND vector_dims(vec) = %s ON CONFLICT DO NOTHING",
                (plan.model, dims),
            )
    if plan.embed:
        conn.execute(
            "INSERT INTO wanted SELECT source_id, content, "
            "public.embedding_normalized_hash(%s, normalized), NULL FROM pg_temp.source_rows "
            "WHERE content <> '' ON CONFLICT DO NOTHING",
            (plan.model,),
        )
        empty = conn.execute(
            "SELECT s.source_id FROM pg_temp.source_rows s WHERE s.content = '' "
            "AND NOT EXISTS (SELECT 1 FROM wanted w WHERE w.source_id = s.source_id) "
            "ORDER BY 1"
        ).fetchall()
        counts.skip("no text to embed", len(empty), [r[0] for r in empty])
    conn.execute("ANALYZE pg_temp.wanted")


def sync_source(
    conn: psycopg.Connection,
    source: Source,
    embedder: Embedder | None,
    log: Log,
    *,
    ids: Sequence[str] | None = None,
    batch_size: int = 64,  # long texts embed at ~30 rows/s: a progress line every few s
) -> list[SyncCounts]:
    """Sync every model ``source`` feeds; ``ids`` limits the work to those source ids.

    ``conn`` must be in autocommit mode (each batch is its own transaction).
    """
    register_vector(conn)
    results: list[SyncCounts] = []
    with source_rows(conn, source, ids):
        for plan in plans_for(source, embedder.model if embedder else None):
            results.append(_sync_plan(conn, source, plan, embedder, log, ids, batch_size))
    return results


def _sync_plan(
    conn: psycopg.Connection,
    source: Source,
    plan: ModelPlan,
    embedder: Embedder | None,
    log: Log,
    ids: Sequence[str] | None,
    batch_size: int,
) -> SyncCounts:
    started = time.perf_counter()
    counts = SyncCounts(source.name, plan.model, plan.origin)
    build_wanted(conn, source, plan, counts)
    _delete_gone(conn, source, plan.model, counts, ids)
    _merge_imported(conn, source, plan.model, counts)
    if plan.embed and embedder is not None:
        _embed_changed(conn, source, embedder, counts, log, batch_size)
    total = conn.execute("SELECT count(*) FROM wanted").fetchone()
    counts.unchanged = int(total[0] if total else 0) - counts.inserted - counts.updated
    counts.unchanged -= counts.skipped_reasons.get("refused by the database", 0)
    counts.seconds = time.perf_counter() - started
    conn.execute("DROP TABLE IF EXISTS pg_temp.wanted")
    log(
        f"{source.name} / {plan.model} ({plan.origin}): {counts.inserted} inserted, "
        f"{counts.updated} updated, {counts.unchanged} unchanged, {counts.deleted} deleted"
        + (f", {counts.skipped} skipped" if counts.skipped else "")
    )
    return counts


def _delete_gone(
    conn: psycopg.Connection,
    source: Source,
    model: str,
    counts: SyncCounts,
    ids: Sequence[str] | None,
) -> None:
    with conn.transaction():
        cur = conn.execute(
            "DELETE FROM public.embeddings e WHERE e.source_table = %s AND e.model = %s "
            "AND (%s::text[] IS NULL OR e.source_id = ANY(%s::text[])) "
            "AND NOT EXISTS (SELECT 1 FROM wanted w WHERE w.source_id = e.source_id) "
            "RETURNING e.source_id",
            (source.name, model, ids, ids),
        )
        counts.deleted += cur.rowcount
        counts.changed_ids += [str(r[0]) for r in cur.fetchall()]


_UPSERT = """
    INSERT INTO public.embeddings AS e
           (source_table, source_id, model, dimensions, content, content_hash, embedding, metadata)
    SELECT %(source)s, x.source_id, %(model)s, vector_dims(x.vec), x.content, x.h, x.vec,
           jsonb_build_object('origin', %(origin)s::text)
      FROM {rows} x
    ON CONFLICT (source_table, source_id, model) DO UPDATE
       SET content = EXCLUDED.content, content_hash = EXCLUDED.content_hash,
           embedding = EXCLUDED.embedding, dimensions = EXCLUDED.dimensions,
           metadata = e.metadata || EXCLUDED.metadata, updated_at = now()
    RETURNING (xmax = 0), source_id
"""


def _register_model(conn: psycopg.Connection, model: str) -> None:
    conn.execute(
        "INSERT INTO public.embedding_models (model, dimensions) "
        "SELECT %s, vector_dims(vec) FROM wanted WHERE vec IS NOT NULL LIMIT 1 "
        "ON CONFLICT (model) DO NOTHING",
        (model,),
    )


def _merge_imported(
    conn: psycopg.Connection, source: Source, model: str, counts: SyncCounts
) -> None:
    """Insert or update imported vectors whose text hash or vector differs (set-based)."""
    rows = sql.SQL(
        "(SELECT w.* FROM wanted w LEFT JOIN public.embeddings e ON e.source_table = {src} "
        "AND e.model = {model} AND e.source_id = w.source_id WHERE w.vec IS NOT NULL "
        "AND (e.id IS NULL OR e.content_hash <> w.h OR e.embedding <> w.vec))"
    ).format(src=sql.Literal(source.name), model=sql.Literal(model))
    with conn.transaction():
        _register_model(conn, model)
        flags = conn.execute(
            sql.SQL(_UPSERT).format(rows=rows),
            {"source": source.name, "model": model, "origin": "imported from v1"},
        ).fetchall()
    counts.written(flags)


def _embed_changed(
    conn: psycopg.Connection,
    source: Source,
    embedder: Embedder,
    counts: SyncCounts,
    log: Log,
    batch_size: int,
) -> None:
    """Embed new and changed rows page by page; each batch commits on its own."""
    todo_sql = (
        "SELECT w.source_id, w.content, w.h FROM wanted w LEFT JOIN public.embeddings e "
        "ON e.source_table = %s AND e.model = %s AND e.source_id = w.source_id "
        "WHERE w.vec IS NULL AND (e.id IS NULL OR e.content_hash <> w.h) "
        "AND w.source_id > %s ORDER BY w.source_id LIMIT %s"
    )
    pending = conn.execute(
        "SELECT count(*) FROM wanted w LEFT JOIN public.embeddings e ON e.source_table = %s "
        "AND e.model = %s AND e.source_id = w.source_id "
        "WHERE w.vec IS NULL AND (e.id IS NULL OR e.content_hash <> w.h)",
        (source.name, embedder.model),
    ).fetchone()
    total = int(pending[0]) if pending else 0
    if total == 0:
        return
    log(f"{source.name} / {embedder.model}: {total} rows to embed")
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS staged (source_id text, content text, h text, vec vector)"
    )
    done, last, started, next_report = 0, "", time.perf_counter(), time.monotonic() + REPORT_EVERY
    while True:
        page = conn.execute(todo_sql, (source.name, embedder.model, last, PAGE_ROWS)).fetchall()
        if not page:
            break
        last = page[-1][0]
        for i in range(0, len(page), batch_size):
            batch = page[i : i + batch_size]
            vectors = embedder.embed([r[1] for r in batch])
            _write_batch(conn, source, embedder.model, batch, vectors, counts)
            done += len(batch)
            if time.monotonic() >= next_report or done == total:
                elapsed = time.perf_counter() - started
                log(f"{source.name} / {embedder.model}: {progress_line(done, total, elapsed)}")
                next_report = time.monotonic() + REPORT_EVERY
    conn.execute("DROP TABLE IF EXISTS pg_temp.staged")


def progress_line(done: int, total: int, seconds: float) -> str:
    """``embedded 1200/5183 (23%), 31.0 rows/s, ETA 2m08s`` for the run log."""
    rate = done / seconds if seconds > 0 else 0.0
    left = (total - done) / rate if rate > 0 else float("inf")
    eta = "done" if done >= total else (
        f"ETA {int(left // 60)}m{int(left % 60):02d}s" if left != float("inf") else "ETA unknown"
    )  # fmt: skip
    return f"embedded {done}/{total} ({done / max(total, 1):.0%}), {rate:.1f} rows/s, {eta}"


def _write_batch(
    conn: psycopg.Connection,
    source: Source,
    model: str,
    batch: Sequence[tuple[str, str, str]],
    vectors: Sequence[Sequence[float]],
    counts: SyncCounts,
) -> None:
    params = {"source": source.name, "model": model, "origin": "embedded"}
    rows = [
        (sid, content, h, np.asarray(vec, dtype=np.float32))
        for (sid, content, h), vec in zip(batch, vectors, strict=True)
    ]
    try:
        with conn.transaction():
            _stage(conn, rows)
            conn.execute(
                "INSERT INTO public.embedding_models (model, dimensions) VALUES (%s, %s) "
                "ON CONFLICT (model) DO NOTHING",
                (model, len(rows[0][3])),
            )
            flags = conn.execute(
                sql.SQL(_UPSERT).format(
                    rows=sql.SQL("(SELECT source_id, content, h, vec FROM staged)")
                ),
                params,
            ).fetchall()
    except ROW_ERRORS:
        flags = _write_rows_one_by_one(conn, rows, params, counts)
    counts.written(flags)


def _stage(conn: psycopg.Connection, rows: Sequence[tuple[str, str, str, np.ndarray]]) -> None:
    conn.execute("TRUNCATE pg_temp.staged")
    with conn.cursor() as cur:
        with cur.copy(
            "COPY pg_temp.staged (source_id, content, h, vec) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "text", "text", "vector"])
            for row in rows:
                copy.write_row(row)


def _write_rows_one_by_one(
    conn: psycopg.Connection,
    rows: Sequence[tuple[str, str, str, np.ndarray]],
    params: dict[str, str],
    counts: SyncCounts,
) -> list[tuple[bool, str]]:
    """The slow path after a batch failed: each row alone, the refused ones reported."""
    flags: list[tuple[bool, str]] = []
    refused: list[str] = []
    for row in rows:
        try:
            with conn.transaction():
                _stage(conn, [row])
                flags += conn.execute(
                    sql.SQL(_UPSERT).format(
                        rows=sql.SQL("(SELECT source_id, content, h, vec FROM staged)")
                    ),
                    params,
                ).fetchall()
        except ROW_ERRORS:
            refused.append(row[0])
    counts.skip("refused by the database", len(refused), refused)
    return flags
