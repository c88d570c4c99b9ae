"""Measurements behind the embeddings_index checks, on a live v2 database.

Each function returns an :class:`Outcome`: pass/fail, numbers for the UI (plotted over time) and
a short text naming what failed. They only read (temporary tables aside), so they run on a
schedule against the live database.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from cartrita_assets.vectors import recall
from cartrita_assets.vectors.indexing import index_name, index_state
from cartrita_assets.vectors.sources import Source
from cartrita_assets.vectors.sync import ModelPlan, SyncCounts, build_wanted, plans_for, source_rows

# The columns of the per-source degenerate-vector table (asset metadata and check metadata).
DEGENERATE_COLUMNS = [
    "source",
    "model",
    "rows",
    "zero",
    "extreme magnitude",
    "undefined distance",
    "duplicates",
]


@dataclass
class Outcome:
    passed: bool
    metadata: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.passed = False
        self.problems.append(problem)


def models(conn: psycopg.Connection) -> list[tuple[str, int, str, int]]:
    """(model, dimensions, index kind, rows) of every model with embeddings."""
    return [
        (str(m), int(d), str(k), int(n))
        for m, d, k, n in conn.execute(
            "SELECT m.model, m.dimensions, m.index_kind, count(e.id) "
            "FROM public.embedding_models m JOIN public.embeddings e ON e.model = m.model "
            "GROUP BY 1, 2, 3 ORDER BY 1"
        ).fetchall()
    ]


def _cast(dims: int) -> str:
    return f"vector({dims})" if dims <= 2000 else f"halfvec({dims})"


def explain_search(
    conn: psycopg.Connection, model: str, dims: int, prefer_index: bool = False
) -> str:
    """EXPLAIN of ``similarity_search`` for ``model``, a stored vector as the query.

    A model with a generated branch (exact or HNSW) is planned inline: the plan shows the scan
    the search really runs. A model on the general path (IVFFlat, or added since the branches
    were generated) shows only a function scan, so the query similarity_search_general runs for
    it is explained instead. ``prefer_index`` disables sequential scans, to tell an index the
    planner cannot use (a defect) from one it can use but finds slower than a scan on a small
    table.
    """
    row = conn.execute(
        "SELECT embedding::text FROM public.embeddings WHERE model = %s LIMIT 1", (model,)
    ).fetchone()
    if row is None:
        return ""
    call = sql.SQL(
        "EXPLAIN (COSTS OFF) SELECT id FROM public.similarity_search({q}::vector, -1, 10, NULL, "
        "{model})"
    ).format(q=sql.Literal(row[0]), model=sql.Literal(model))
    expr = conn.execute("SELECT public.embedding_index_expression(%s)", (dims,)).fetchone()[0]  # type: ignore[index]
    general = sql.SQL(
        "EXPLAIN (COSTS OFF) SELECT e.id FROM public.embeddings e WHERE e.model = {model} "
        "ORDER BY {expr} <=> {q}::{cast} LIMIT 10"
    ).format(
        model=sql.Literal(model), expr=sql.SQL(expr), q=sql.Literal(row[0]),
        cast=sql.SQL(_cast(dims)),
    )  # fmt: skip
    with conn.transaction():
        if prefer_index:
            for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                conn.execute(f"SET LOCAL {setting} = off")
        plan = "\n".join(r[0] for r in conn.execute(call).fetchall())
        if "similarity_search_general" not in plan:
            return plan
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        conn.execute("SET LOCAL ivfflat.iterative_scan = relaxed_order")
        return "\n".join(r[0] for r in conn.execute(general).fetchall())


def vector_index_is_valid(conn: psycopg.Connection) -> Outcome:
    """Each model with an ANN index in the registry has it, valid and ready, on that model only,
    of the registered kind, and the search query plans through it."""
    out = Outcome(True)
    rows = []
    for model, dims, kind, n in models(conn):
        name = index_name(model)
        state = index_state(conn, name)
        if kind == "exact":
            rows.append([model, n, kind, "-", "exact scan"])
            continue
        if state is None:
            out.fail(f"{model}: its {kind} index {name} is missing")
            rows.append([model, n, kind, "missing", "-"])
            continue
        if not all(state):
            out.fail(f"{model}: index {name} is not valid (an interrupted build?)")
        am, pred = conn.execute(
            "SELECT a.amname, pg_get_expr(i.indpred, i.indrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
            "WHERE c.relname = %s AND c.relnamespace = 'public'::regnamespace",
            (name,),
        ).fetchone()  # type: ignore[misc]
        if am != kind:
            out.fail(f"{model}: index {name} is {am}, the registry says {kind}")
        if pred is None or model.replace("'", "''") not in pred:
            out.fail(f"{model}: index {name} is not limited to the model ({pred})")
        plan = explain_search(conn, model, dims)
        used = "yes" if name in plan else "NO"
        if used == "NO" and name in explain_search(conn, model, dims, prefer_index=True):
            used = f"usable (a scan is cheaper at {n} rows)"
        if used == "NO":
            out.fail(f"{model}: the search query cannot use {name}: {plan.splitlines()[:3]}")
        rows.append([model, n, kind, "valid" if all(state) else "INVALID", used])
    out.metadata["models"] = rows
    out.metadata["ann_indexes"] = sum(1 for r in rows if r[2] != "exact")
    return out


def similarity_search_finds_itself(
    conn: psycopg.Connection, sample: int = 20, seed: int = 7
) -> Outcome:
    """Sampled stored vectors come back as their own top hit, or tied with a row at the same
    distance (an identical vector). The sample is chosen by hash, so it does not depend on the
    heap order; a vector whose distance to itself is undefined (a zero vector, or one whose
    magnitude overflows pgvector's arithmetic) has no nearest neighbour and is skipped."""
    register_vector(conn)
    out = Outcome(True)
    total = found = skipped = 0
    for model, _dims, _kind, _n in models(conn):
        picks = conn.execute(
            "SELECT id, embedding, 1 - (embedding <=> embedding) FROM public.embeddings "
            "WHERE model = %s ORDER BY md5(%s || chr(31) || source_table || chr(31) || source_id), "
            "id LIMIT %s",
            (model, str(seed), sample),
        ).fetchall()
        for row_id, vec, own in picks:
            if own is None or own != own:  # NaN: cosine undefined
                skipped += 1
                continue
            total += 1
            top = conn.execute(
                "SELECT id, similarity FROM public.similarity_search(%s, -1, 1, NULL, %s)",
                (vec, model),
            ).fetchone()
            if top is not None and (top[0] == row_id or top[1] >= own - 1e-6):
                found += 1
            else:
                out.fail(f"{model}: embedding {row_id} is not its own top hit (got {top})")
    out.metadata.update({"sampled": total, "found_itself": found, "missed": total - found,
                         "skipped_undefined_distance": skipped})  # fmt: skip
    return out


def recall_at_10(conn: psycopg.Connection, target: float = recall.TARGET) -> Outcome:
    """similarity_search's recall@10 against an exact scan for every model with an ANN index,
    measured by :func:`recall.measure` on the model's fixed query set: the same number for the
    same data and index wherever it is called. Passes when the Wilson 95% lower bound reaches
    ``target`` for every model; the effort the tuning recorded is reported alongside."""
    out = Outcome(True)
    per_model = []
    worst = worst_recall = 1.0
    for model, _dims, kind, n in models(conn):
        effort, tuned_lower, note = conn.execute(
            "SELECT search_effort, search_recall_lower, search_tuning "
            "FROM public.embedding_models WHERE model = %s",
            (model,),
        ).fetchone()  # type: ignore[misc]
        if kind == "exact":
            per_model.append([model, n, kind, "exact scan", 1.0, 1.0, "-", "-", "-"])
            continue
        m = recall.measure(conn, model, recall.sample_queries(conn, model))
        worst, worst_recall = min(worst, m.lower), min(worst_recall, m.recall)
        shown = effort if effort is not None else "default"
        tuned = round(tuned_lower, 4) if tuned_lower is not None else "not tuned"
        per_model.append([model, n, kind, shown, round(m.recall, 4), round(m.lower, 4), tuned,
                          round(m.p50_ms, 2), note or "-"])  # fmt: skip
        if m.lower < target:
            out.fail(f"{model}: recall@10 {m.recall:.4f}, 95% lower bound {m.lower:.4f} < "
                     f"{target} over {m.queries} queries ({kind} index, effort {shown}; "
                     f"{note or 'not tuned'})")  # fmt: skip
    out.metadata.update({"recall_at_10": round(worst_recall, 4),
                         "recall_at_10_lower_bound": round(worst, 4), "target": target,
                         "queries_per_model": recall.SAMPLE, "seed": recall.SEED,
                         "models": per_model})  # fmt: skip
    return out


def degenerate_vectors(conn: psycopg.Connection) -> Outcome:
    """Zero, extreme-magnitude, undefined-distance and duplicate vectors per source and model,
    from vector_search_stats. They are data, not defects: reported, never a search failure."""
    out = Outcome(True)
    rows = conn.execute(
        "SELECT source_table, model, embeddings, zero_vectors, extreme_magnitude, "
        "undefined_distance, duplicate_vectors FROM public.vector_search_stats ORDER BY 1, 2"
    ).fetchall()
    out.metadata["sources"] = [list(r) for r in rows]
    for key, col in (("zero_vectors", 3), ("extreme_magnitude", 4),
                     ("undefined_distance", 5), ("duplicate_vectors", 6)):  # fmt: skip
        out.metadata[key] = int(sum(r[col] for r in rows))
    for source, model, _n, zero, extreme, undefined, dups in rows:
        if zero or extreme or undefined or dups:
            out.fail(f"{source} / {model}: {zero} zero, {extreme} extreme-magnitude, "
                     f"{undefined} undefined-distance, {dups} duplicate vectors")  # fmt: skip
    return out


def hybrid_search_combines_both(conn: psycopg.Connection, seed: int = 3) -> Outcome:
    """hybrid_search returns a row found only by its vector and a row found only by a keyword.

    The case is built from the data: the query vector is row V's (its text is unique); the query
    text is a word that occurs in a few rows K far from V and not in V. With a threshold of 0.95
    only V (and exact duplicates) pass the vector side, so K can only come back by keyword.
    """
    register_vector(conn)
    out = Outcome(True)
    rnd = random.Random(seed)
    for model, _dims, _kind, n in models(conn):
        if n < 3:
            continue
        case = _hybrid_case(conn, model, rnd)
        if case is None:
            out.metadata.setdefault("not_applicable", []).append(model)  # type: ignore[union-attr]
            continue
        v_id, vec, word, k_ids = case
        got = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                "SELECT id, vector_score, keyword_score FROM public.hybrid_search("
                "%s, %s, 0.7, 0.3, 0.95, 10, NULL, %s)",
                (word, vec, model),
            ).fetchall()
        }
        vector_only = v_id in got and got[v_id][0] > 0 and got[v_id][1] == 0
        keyword_only = any(k in got and got[k][1] > 0 and got[k][0] == 0 for k in k_ids)
        out.metadata.setdefault("cases", []).append(  # type: ignore[union-attr]
            [model, v_id, word, "yes" if vector_only else "NO", "yes" if keyword_only else "NO"]
        )
        if not vector_only:
            out.fail(f"{model}: the vector-only match {v_id} did not come back for {word!r}")
        if not keyword_only:
            out.fail(f"{model}: no keyword-only match for {word!r} came back (rows {k_ids})")
    if "cases" not in out.metadata:
        out.passed = False
        out.problems.append("no model had data to build a vector-only + keyword-only case")
    return out


def _hybrid_case(
    conn: psycopg.Connection, model: str, rnd: random.Random
) -> tuple[int, object, str, list[int]] | None:
    uniques = conn.execute(
        "SELECT min(id) FROM public.embeddings WHERE model = %s AND length(content) BETWEEN 20 "
        "AND 20000 GROUP BY content_hash HAVING count(*) = 1 ORDER BY 1 LIMIT 200",
        (model,),
    ).fetchall()
    rnd.shuffle(uniques)
    for (v_id,) in uniques[:10]:
        vec = conn.execute("SELECT embedding FROM public.embeddings WHERE id = %s", (v_id,))
        vector = vec.fetchone()[0]  # type: ignore[index]
        far = conn.execute(
            "SELECT id, content FROM public.embeddings WHERE model = %s AND id <> %s "
            "AND 1 - (embedding <=> %s) < 0.9 AND length(content) < 20000 "
            "ORDER BY embedding <=> %s DESC LIMIT 20",
            (model, v_id, vector, vector),
        ).fetchall()
        for k_id, content in far:
            words = sorted({w for w in _words(content)}, key=lambda w: (len(w), w), reverse=True)
            for word in words[:40]:
                matches = conn.execute(
                    "SELECT array_agg(id) FROM (SELECT id FROM public.embeddings WHERE model = %s "
                    "AND search_vector @@ websearch_to_tsquery('english', %s) LIMIT 4) x",
                    (model, word),
                ).fetchone()[0]  # type: ignore[index]
                if matches and k_id in matches and v_id not in matches and len(matches) <= 3:
                    return v_id, vector, word, list(matches)
    return None


def _words(text: str) -> list[str]:
    out, cur = [], []
    for ch in text.lower():
        if "a" <= ch <= "z":
            cur.append(ch)
        else:
            if len(cur) >= 5:
                out.append("".join(cur))
            cur = []
    if len(cur) >= 5:
        out.append("".join(cur))
    return out


def embeddings_are_fresh(
    conn: psycopg.Connection, sources: Sequence[Source], embedder_model: str | None
) -> Outcome:
    """No source row lacks its embedding, none is stale (hash or vector differs), none orphaned."""
    out = Outcome(True)
    rows = []
    missing_total = stale_total = orphan_total = 0
    for source in sources:
        with source_rows(conn, source, None):
            rows += [_freshness(conn, source, plan) for plan in plans_for(source, embedder_model)]
    for name, model, missing, stale, orphaned, _skipped in rows:
        missing_total += missing
        stale_total += stale
        orphan_total += orphaned
        if missing or stale or orphaned:
            out.fail(f"{name} / {model}: {missing} missing, {stale} stale, {orphaned} orphaned")
    out.metadata.update(
        {
            "missing": missing_total,
            "stale": stale_total,
            "orphaned": orphan_total,
            "sources": rows,
        }
    )
    return out


def _freshness(conn: psycopg.Connection, source: Source, plan: ModelPlan) -> list[object]:
    """[source, model, missing, stale, orphaned, skipped] of a model (source in source_rows)."""
    counts = SyncCounts(source.name, plan.model, plan.origin)
    build_wanted(conn, source, plan, counts)
    missing, stale, orphaned = conn.execute(
        "SELECT (SELECT count(*) FROM wanted w WHERE NOT EXISTS (SELECT 1 FROM "
        "  public.embeddings e WHERE e.source_table = %(s)s AND e.model = %(m)s "
        "  AND e.source_id = w.source_id)), "
        "(SELECT count(*) FROM wanted w JOIN public.embeddings e ON e.source_table = %(s)s "
        "  AND e.model = %(m)s AND e.source_id = w.source_id WHERE e.content_hash <> w.h "
        "  OR (w.vec IS NOT NULL AND e.embedding <> w.vec)), "
        "(SELECT count(*) FROM public.embeddings e WHERE e.source_table = %(s)s "
        "  AND e.model = %(m)s AND NOT EXISTS (SELECT 1 FROM wanted w "
        "  WHERE w.source_id = e.source_id))",
        {"s": source.name, "m": plan.model},
    ).fetchone()  # type: ignore[misc]
    conn.execute("DROP TABLE IF EXISTS pg_temp.wanted")
    return [source.name, plan.model, missing, stale, orphaned, counts.skipped]
