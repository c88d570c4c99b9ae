"""Recall@10 of a model's search against an exact scan: one deterministic measurement.

The tuning after an index build, the ``recall_at_10_meets_target`` check and the integration
report all measure with :func:`measure`, so on the same data and index they get the same
number and the same verdict. What makes it deterministic:

- the query rows are chosen by a hash of (source table, source id, seed), not by ``random()``
  over the heap order (which a restore or a VACUUM changes);
- each query is its stored vector plus noise from a generator seeded by that same hash, so it is
  not an exact copy (which would flatter the index);
- an HNSW or IVFFlat search at a fixed effort on an unchanged index returns the same rows.

A found row counts as a hit when its distance is at most the exact k-th distance (a tie with an
equally distant row is not a miss). Rows whose distance to themselves is undefined (zero
vectors, overflowing magnitudes) are never queries and never expected neighbours. The verdict
uses the Wilson 95% lower bound of the hit proportion over queries x k neighbours.
"""

from __future__ import annotations

import hashlib
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

K = 10
SAMPLE = 300  # queries: 3000 neighbour trials bound recall within about 0.005
SEED = 11
NOISE = 0.02  # noise per component, relative to the vector's mean absolute component
TARGET = 0.98
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Query:
    vector: np.ndarray
    truth_ids: frozenset[int]
    kth_distance: float


@dataclass(frozen=True)
class Measurement:
    """Recall and latency of one model's search at one effort."""

    model: str
    effort: int | None  # None: as the search functions run it
    queries: int
    hits: int
    wanted: int
    p50_ms: float
    p95_ms: float

    @property
    def recall(self) -> float:
        return self.hits / self.wanted if self.wanted else 1.0

    @property
    def lower(self) -> float:
        return wilson_lower(self.hits, self.wanted)


def wilson_lower(hits: int, trials: int, z: float = Z95) -> float:
    """The Wilson score interval's lower bound of a proportion (1.0 with no trials)."""
    if trials <= 0:
        return 1.0
    p = hits / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return (centre - spread) / (1 + z * z / trials)


def _row_seed(source_table: str, source_id: str, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}\x00{source_table}\x00{source_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def sample_queries(
    conn: psycopg.Connection, model: str, sample: int = SAMPLE, seed: int = SEED
) -> list[Query]:
    """The fixed query set of ``model``: chosen by hash, perturbed by seeded noise, each with
    its exact top k (a sequential scan) computed once."""
    register_vector(conn)
    rows = conn.execute(
        "SELECT source_table, source_id, embedding FROM public.embeddings "
        "WHERE model = %s AND NOT (embedding <=> embedding) = 'NaN' "
        "ORDER BY md5(%s || chr(31) || source_table || chr(31) || source_id), id LIMIT %s",
        (model, str(seed), sample),
    ).fetchall()
    queries = []
    for source_table, source_id, vec in rows:
        v = np.asarray(vec.to_numpy(), dtype=np.float32)
        rng = np.random.default_rng(_row_seed(source_table, source_id, seed))
        scale = NOISE * float(np.abs(v).mean() or 1.0)
        q = (v + rng.normal(0, scale, size=v.shape)).astype(np.float32)
        exact = exact_top(conn, model, q)
        if exact:
            queries.append(Query(q, frozenset(i for i, _ in exact), exact[-1][1]))
    return queries


def exact_top(conn: psycopg.Connection, model: str, q: np.ndarray, k: int = K) -> list[tuple]:
    """(id, distance) of the true top k: a sequential scan, undefined distances left out."""
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        return conn.execute(
            "SELECT id, d FROM (SELECT id, embedding <=> %s::vector AS d FROM public.embeddings "
            "WHERE model = %s) x WHERE d <> 'NaN' ORDER BY d, id LIMIT %s",
            (q, model, k),
        ).fetchall()


Search = Callable[[psycopg.Connection, str, np.ndarray], list[tuple]]


def via_functions(conn: psycopg.Connection, model: str, q: np.ndarray) -> list[tuple]:
    """(id, distance) as ``similarity_search`` returns them: the path every caller takes."""
    rows = conn.execute(
        "SELECT id, 1 - similarity FROM public.similarity_search(%s, -1, %s, NULL, %s)",
        (q, K, model),
    ).fetchall()
    return list(rows)


def at_effort(conn: psycopg.Connection, model: str, kind: str, effort: int) -> Search:
    """A search of ``model``'s index at ``effort`` (0: an exact scan), set per transaction."""
    dims, expr = conn.execute(
        "SELECT dimensions, public.embedding_index_expression(dimensions) "
        "FROM public.embedding_models WHERE model = %s",
        (model,),
    ).fetchone()  # type: ignore[misc]
    cast = "vector" if dims <= 2000 else "halfvec"
    order = f"({expr} <=> %s::{cast}({dims}))" + (" + 0" if effort == 0 else "")
    statement = (
        f"SELECT id, {order} AS d FROM public.embeddings WHERE model = %s ORDER BY d LIMIT {K}"
    )
    setting = {"hnsw": "hnsw.ef_search", "ivfflat": "ivfflat.probes"}.get(kind)

    def search(conn: psycopg.Connection, model: str, q: np.ndarray) -> list[tuple]:
        with conn.transaction():
            if setting and effort:
                conn.execute(f"SET LOCAL {setting} = {int(effort)}")
            return conn.execute(statement, (q, model)).fetchall()  # type: ignore[arg-type]

    return search


def measure(
    conn: psycopg.Connection,
    model: str,
    queries: list[Query],
    search: Search = via_functions,
    effort: int | None = None,
) -> Measurement:
    """Recall@k of ``search`` over ``queries`` and its client-side latency."""
    hits = wanted = 0
    latencies = []
    for query in queries:
        started = time.perf_counter()
        found = search(conn, model, query.vector)
        latencies.append((time.perf_counter() - started) * 1000)
        wanted += len(query.truth_ids)
        tolerance = 1e-6 * max(1.0, abs(query.kth_distance))
        close = sum(1 for _id, d in found if d is not None and d <= query.kth_distance + tolerance)
        hits += min(close, len(query.truth_ids))
    p50, p95 = _percentiles(latencies)
    return Measurement(model, effort, len(queries), hits, wanted, p50, p95)


def _percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    if len(values) == 1:
        return values[0], values[0]
    return statistics.median(values), statistics.quantiles(values, n=20, method="inclusive")[18]
