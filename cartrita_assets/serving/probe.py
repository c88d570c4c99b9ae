"""The same searches on two connections (direct and pooled, or primary and replica), compared."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import psycopg

from cartrita_assets.errors import ServingError

# The guide's calls, read-only (record_metrics off: a replica refuses writes). The vector is sent
# as text: no type registration is needed on a pooled connection.
SEARCHES = {
    "similarity_search": "SELECT id FROM similarity_search(%(q)s::vector, 0.0, 10, NULL, %(m)s)",
    "hybrid_search": (
        "SELECT id FROM hybrid_search(%(t)s, %(q)s::vector, 0.7, 0.3, 0.0, 10, NULL, %(m)s)"
    ),
}


@dataclass(frozen=True)
class Query:
    """One probe: a stored row's vector, its model and the first words of its text."""

    model: str
    vector: str
    text: str

    def params(self) -> dict[str, str]:
        return {"q": self.vector, "m": self.model, "t": self.text}


def sample_queries(conn: psycopg.Connection, count: int = 5) -> list[Query]:
    """``count`` stored rows, the lowest ids (the same rows on every server holding the data)."""
    rows = conn.execute(
        "SELECT model, embedding::text, left(content, 120) FROM embeddings ORDER BY id LIMIT %s",
        (count,),
    ).fetchall()
    if not rows:
        raise ServingError(
            "v2's embeddings table is empty: materialize embeddings_index before probing search."
        )
    return [Query(str(m), str(v), str(t)) for m, v, t in rows]


def search_results(conn: psycopg.Connection, queries: list[Query]) -> dict[str, list[list[int]]]:
    """Each search's result ids, per query, in the order the search returned them."""
    return {
        name: [[int(r[0]) for r in conn.execute(stmt, q.params()).fetchall()] for q in queries]
        for name, stmt in SEARCHES.items()
    }


def differences(a: dict[str, list[list[int]]], b: dict[str, list[list[int]]]) -> list[str]:
    """Where two runs of ``search_results`` disagree (search and query number)."""
    return [
        f"{name} query {i + 1}: {x[:3]}... vs {y[:3]}..."
        for name in SEARCHES
        for i, (x, y) in enumerate(zip(a[name], b[name], strict=True))
        if x != y
    ]


def p50_ms(conn: psycopg.Connection, queries: list[Query], rounds: int = 20) -> float:
    """Median wall time of ``similarity_search`` over ``rounds`` passes of ``queries``."""
    timings = []
    for _ in range(rounds):
        for q in queries:
            started = time.perf_counter()
            conn.execute(SEARCHES["similarity_search"], q.params()).fetchall()
            timings.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(timings), 3)
