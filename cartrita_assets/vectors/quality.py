"""Measurements behind the embeddings_index checks, on a live v2 database.

Each function returns an :class:`Outcome`: pass/fail, numbers for the UI (plotted over time) and
a short text naming what failed. They only read (temporary tables aside), so they run on a
schedule against the live database.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from cartrita_assets.vectors.indexing import index_name, index_state
from cartrita_assets.vectors.sources import Source
from cartrita_assets.vectors.sync import SyncCounts, build_wanted, plans_for


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
    """Sampled stored vectors come back as their own top hit (or a row with the same vector)."""
    register_vector(conn)
    out = Outcome(True)
    total = found = 0
    for model, _dims, _kind, _n in models(conn):
        conn.execute("SELECT setseed(%s)", (seed / 100,))
        picks = conn.execute(
            "SELECT id, embedding FROM public.embeddings WHERE model = %s ORDER BY random() "
            "LIMIT %s",
            (model, sample),
        ).fetchall()
        for row_id, vec in picks:
            total += 1
            top = conn.execute(
                "SELECT id, similarity FROM public.similarity_search(%s, -1, 1, NULL, %s)",
                (vec, model),
            ).fetchone()
            if top is not None and (top[0] == row_id or top[1] >= 0.99999):
                found += 1
            else:
                out.fail(f"{model}: embedding {row_id} is not its own top hit (got {top})")
    out.metadata.update({"sampled": total, "found_itself": found, "missed": total - found})
    return out


def recall_at_10(
    conn: psycopg.Connection,
    queries: int = 50,
    target: float = 0.95,
    k: int = 10,
    seed: int = 11,
    noise: float = 0.02,
) -> Outcome:
    """similarity_search's top-k against an exact scan, per model, on perturbed stored vectors.

    Queries are stored vectors plus a little noise (not exact copies, which would flatter the
    index). Latency is timed client-side around the function call.
    """
    register_vector(conn)
    rng = np.random.default_rng(seed)
    out = Outcome(True)
    per_model = []
    all_latencies: list[float] = []
    worst = 1.0
    for model, _dims, kind, n in models(conn):
        conn.execute("SELECT setseed(%s)", (seed / 100,))
        base = conn.execute(
            "SELECT embedding FROM public.embeddings WHERE model = %s ORDER BY random() LIMIT %s",
            (model, queries),
        ).fetchall()
        if not base:
            continue
        hits = wanted = 0
        latencies = []
        for i in range(queries):
            v = np.asarray(base[i % len(base)][0].to_numpy(), dtype=np.float32)
            q = v + rng.normal(0, noise * float(np.abs(v).mean() or 1), size=v.shape).astype(
                np.float32
            )
            exact = _exact_top(conn, model, q, k)
            started = time.perf_counter()
            got = conn.execute(
                "SELECT id FROM public.similarity_search(%s, -1, %s, NULL, %s)", (q, k, model)
            ).fetchall()
            latencies.append((time.perf_counter() - started) * 1000)
            hits += len(set(exact) & {r[0] for r in got})
            wanted += len(exact)
        recall = hits / wanted if wanted else 1.0
        worst = min(worst, recall)
        all_latencies += latencies
        p50, p95 = _percentiles(latencies)
        per_model.append([model, n, kind, round(recall, 4), round(p50, 2), round(p95, 2)])
        if recall < target:
            out.fail(f"{model}: recall@{k} {recall:.3f} < {target} ({kind} index)")
    p50, p95 = _percentiles(all_latencies)
    out.metadata.update(
        {
            "recall_at_10": round(worst, 4),
            "target": target,
            "queries_per_model": queries,
            "p50_ms": round(p50, 3),
            "p95_ms": round(p95, 3),
            "models": per_model,
        }
    )
    return out


def _exact_top(conn: psycopg.Connection, model: str, q: np.ndarray, k: int) -> list[int]:
    """The true top-k by cosine distance: a sequential scan (no index can serve it)."""
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        rows = conn.execute(
            "SELECT id FROM public.embeddings WHERE model = %s "
            "ORDER BY embedding <=> %s::vector, id LIMIT %s",
            (model, q, k),
        ).fetchall()
    return [r[0] for r in rows]


def _percentiles(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return statistics.median(values), cuts[18]


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
        for plan in plans_for(source, embedder_model):
            counts = SyncCounts(source.name, plan.model, plan.origin)
            build_wanted(conn, source, plan, counts, None)
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
            rows.append([source.name, plan.model, missing, stale, orphaned, counts.skipped])
            missing_total += missing
            stale_total += stale
            orphan_total += orphaned
            if missing or stale or orphaned:
                out.fail(
                    f"{source.name} / {plan.model}: {missing} missing, {stale} stale, "
                    f"{orphaned} orphaned"
                )
    out.metadata.update(
        {
            "missing": missing_total,
            "stale": stale_total,
            "orphaned": orphan_total,
            "sources": rows,
        }
    )
    return out
