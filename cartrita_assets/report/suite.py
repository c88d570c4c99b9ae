"""The guide's integration suites, as code: connectivity, migration state, vector functionality.

Each case is named, timed and independent: a failing case records its error and the suite goes
on. Searches run with ``record_metrics => true`` so they land in ``search_performance_metrics``
like the application's own. Writes (the upsert case) happen in a transaction that is rolled back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from cartrita_assets.envfile.postgres import PostgresSettings
from cartrita_assets.pg.connect import connect
from cartrita_assets.schema import status_rows
from cartrita_assets.schema.files import load_migrations
from cartrita_assets.schema.history import read_history
from cartrita_assets.vectors import quality

GUIDE_FUNCTIONS = ("upsert_embedding", "similarity_search", "hybrid_search",
                   "rebuild_vector_indexes")  # fmt: skip
GUIDE_RELATIONS = ("schema_migrations", "embeddings", "search_performance_metrics",
                   "vector_search_stats")  # fmt: skip
LATENCY_QUERIES = 30


class CaseFailed(Exception):
    """A case's expectation does not hold (the message says which); unlike ``assert``, this is
    raised under ``python -O`` too."""


def expect(condition: object, message: str = "assertion failed") -> None:
    """Fail the current case with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CaseFailed(message)


@dataclass
class Case:
    suite: str
    name: str
    passed: bool
    ms: float
    detail: str


@dataclass
class SuiteResult:
    """Every case, plus the search latencies and recall measured on the way."""

    cases: list[Case] = field(default_factory=list)
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    recall_at_10: float | None = None
    recall_at_10_lower_bound: float | None = None

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.cases)

    @property
    def failed(self) -> list[Case]:
        return [c for c in self.cases if not c.passed]

    def percentiles(self, kind: str) -> tuple[float, float]:
        values = self.latencies_ms.get(kind) or []
        if not values:
            return 0.0, 0.0
        return float(np.percentile(values, 50)), float(np.percentile(values, 95))

    def as_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "cases": [asdict(c) for c in self.cases],
            "latency_ms": {
                k: {
                    "p50": round(self.percentiles(k)[0], 3),
                    "p95": round(self.percentiles(k)[1], 3),
                    "samples": len(v),
                }
                for k, v in self.latencies_ms.items()
            },  # fmt: skip
            "recall_at_10": self.recall_at_10,
            "recall_at_10_lower_bound": self.recall_at_10_lower_bound,
        }


class _Runner:
    def __init__(self, result: SuiteResult, log: Callable[[str], None]) -> None:
        self.result = result
        self.log = log

    def case(self, suite: str, name: str, fn: Callable[[], str]) -> None:
        started = time.perf_counter()
        try:
            detail, passed = fn(), True
        except CaseFailed as exc:
            detail, passed = str(exc) or "assertion failed", False
        except (psycopg.Error, OSError) as exc:
            detail, passed = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}", False
        ms = (time.perf_counter() - started) * 1000
        self.result.cases.append(Case(suite, name, passed, round(ms, 2), detail))
        self.log(f"{suite}/{name}: {'passed' if passed else 'FAILED'} in {ms:.0f} ms ({detail})")


def run_suite(
    admin: PostgresSettings,
    redis_ping: Callable[[], bool],
    migrations: Path,
    log: Callable[[str], None] = lambda _m: None,
    app: PostgresSettings | None = None,
) -> SuiteResult:
    """Run every case against v2's database ``admin.dbname``.

    Args:
        admin: v2's superuser settings for the migrated database.
        redis_ping: pings v2's Redis with the application's credentials.
        migrations: the sql/migrations folder the database should match.
        log: one line per case.
        app: the application's own role on v2 (v1's credentials), to prove it can log in.
    """
    result = SuiteResult()
    run = _Runner(result, log)
    with connect(admin, role="v2 PostgreSQL") as conn:
        register_vector(conn)
        _connectivity(run, conn, redis_ping, app)
        _migration(run, conn, migrations)
        _vector(run, conn, result)
    return result


def _connectivity(
    run: _Runner,
    conn: psycopg.Connection,
    redis_ping: Callable[[], bool],
    app: PostgresSettings | None,
) -> None:
    def version() -> str:
        row = conn.execute("SELECT version()").fetchone()
        expect(row and "PostgreSQL" in row[0], "SELECT version() gave no PostgreSQL version")
        return row[0].split(" on ")[0]

    def pgvector() -> str:
        row = conn.execute("SELECT '[1,2,3]'::vector::text, extversion FROM pg_extension "
                           "WHERE extname = 'vector'").fetchone()  # fmt: skip
        expect(row and row[0] == "[1,2,3]", "'[1,2,3]'::vector did not round-trip")
        return f"pgvector {row[1]}"

    def app_login() -> str:
        if app is None:
            raise CaseFailed("assertion failed")
        with connect(app, role="v2 PostgreSQL (application role)") as own:
            user = own.execute("SELECT current_user").fetchone()
        return f"logged in as {user[0] if user else '?'} with the application's credentials"

    def redis() -> str:
        expect(redis_ping(), "PING did not answer PONG")
        return "PONG"

    run.case("connectivity", "postgres_answers", version)
    run.case("connectivity", "pgvector_works", pgvector)
    if app is not None:
        run.case("connectivity", "application_role_logs_in", app_login)
    run.case("connectivity", "redis_answers", redis)


def _migration(run: _Runner, conn: psycopg.Connection, folder: Path) -> None:
    def applied() -> str:
        rows = status_rows(load_migrations(folder), read_history(conn))
        pending = [f"{r['version']} {r['state']}" for r in rows if r["state"] != "applied"]
        expect(not pending, f"not applied: {', '.join(pending)}")
        return f"{len(rows)} migrations applied, checksums match"

    def guide_objects() -> str:
        names = (
            conn.execute(
                "SELECT array_agg(DISTINCT proname::text) FROM pg_proc "
                "WHERE pronamespace = 'public'::regnamespace AND proname = ANY(%s)",
                (list(GUIDE_FUNCTIONS),),
            ).fetchone()[0]
            or []
        )  # type: ignore[index]
        rels = (
            conn.execute(
                "SELECT array_agg(relname::text) FROM pg_class "
                "WHERE relnamespace = 'public'::regnamespace AND relname = ANY(%s)",
                (list(GUIDE_RELATIONS),),
            ).fetchone()[0]
            or []
        )  # type: ignore[index]
        missing = sorted(set(GUIDE_FUNCTIONS) - set(names)) + sorted(
            set(GUIDE_RELATIONS) - set(rels)
        )
        expect(not missing, f"missing: {', '.join(missing)}")
        return f"{len(names)} functions and {len(rels)} tables/views the guide names"

    run.case("migration", "all_migrations_applied", applied)
    run.case("migration", "guide_objects_exist", guide_objects)


def _models(conn: psycopg.Connection) -> list[tuple[str, int]]:
    return [(m, d) for m, d, _k, _n in quality.models(conn)]


def _vector(run: _Runner, conn: psycopg.Connection, result: SuiteResult) -> None:
    models = _models(conn)

    def has_embeddings() -> str:
        expect(models, "the embeddings table is empty: materialize embeddings_index")
        return ", ".join(f"{m} ({d} dims)" for m, d in models)

    def upsert() -> str:
        dims = models[0][1] if models else 3
        vec = np.full(dims, 0.5, dtype=np.float32)
        with conn.transaction(force_rollback=True):
            actions = [
                conn.execute(
                    "SELECT action FROM upsert_embedding('cartrita_integration', '1', "
                    "'integration probe', %s, %s)",
                    (vec, "cartrita-integration-probe"),
                ).fetchone()[0]  # type: ignore[index]
                for _ in range(2)
            ]
        expect(actions == ["inserted", "unchanged"], f"upsert twice gave {actions}")
        return "inserted, then unchanged (same hash); rolled back"

    def similarity_self() -> str:
        found = quality.similarity_search_finds_itself(conn)  # the check's sample and seed
        expect(found.passed, "; ".join(found.problems[:3]))
        return f"{found.metadata['found_itself']}/{found.metadata['sampled']} found themselves"

    def guide_hybrid_call() -> str:
        model, dims = models[0]
        q = _sample(conn, model)
        rows = conn.execute(
            "SELECT id, vector_score, keyword_score, combined_score FROM hybrid_search("
            "'artificial intelligence', %s, 0.7, 0.3, 0.8, 10, NULL, %s)",
            (q, model),
        ).fetchall()
        expect(rows, "hybrid_search returned nothing for a stored vector")
        expect(all(0 <= r[2] <= 1 for r in rows), "a keyword score is outside 0..1")
        return f"{len(rows)} rows; keyword scores within 0..1"

    def hybrid_both() -> str:
        outcome = quality.hybrid_search_combines_both(conn)
        expect(outcome.passed, "; ".join(outcome.problems[:3]))
        return "a vector-only and a keyword-only match both came back"

    def rrf() -> str:
        model, _ = models[0]
        rows = conn.execute(
            "SELECT count(*) FROM hybrid_search_rrf('notes', %s, 10, 60, NULL, %s, true)",
            (_sample(conn, model), model),
        ).fetchone()
        expect(rows and rows[0] > 0, "hybrid_search_rrf returned nothing")
        return f"{rows[0]} rows"

    def latency() -> str:
        count = "SELECT count(*) FROM search_performance_metrics"
        before = conn.execute(count).fetchone()[0]  # type: ignore[index]
        for model, _dims in models:
            for q in _samples(conn, model, LATENCY_QUERIES):
                for kind, statement in (
                    ("similarity_search",
                     "SELECT * FROM similarity_search(%s, 0.0, 10, NULL, %s, true)"),
                    ("hybrid_search",
                     "SELECT * FROM hybrid_search('notes', %s, 0.7, 0.3, 0.0, 10, NULL, %s, true)"),
                ):  # fmt: skip
                    started = time.perf_counter()
                    conn.execute(statement, (q, model)).fetchall()
                    ms = (time.perf_counter() - started) * 1000
                    result.latencies_ms.setdefault(kind, []).append(ms)
        after = conn.execute(count).fetchone()[0]  # type: ignore[index]
        expected = sum(len(v) for v in result.latencies_ms.values())
        expect(after - before == expected, f"{after - before} searches recorded, not {expected}")
        p50, p95 = result.percentiles("similarity_search")
        return f"{expected} searches recorded; similarity p50 {p50:.2f} ms, p95 {p95:.2f} ms"

    def recall() -> str:
        # the check's own measurement (same queries, seed and bound): they cannot disagree
        outcome = quality.recall_at_10(conn)
        result.recall_at_10 = float(outcome.metadata["recall_at_10"])  # type: ignore[arg-type]
        lower = float(outcome.metadata["recall_at_10_lower_bound"])  # type: ignore[arg-type]
        result.recall_at_10_lower_bound = lower
        expect(outcome.passed, "; ".join(outcome.problems[:3]))
        return (f"recall@10 {result.recall_at_10:.4f}, 95% lower bound {lower:.4f} >= "
                f"{outcome.metadata['target']} (worst model)")  # fmt: skip

    def stats_view() -> str:
        outcome = quality.degenerate_vectors(conn)
        rows = outcome.metadata["sources"]
        expect(rows, "vector_search_stats is empty")
        counts = ", ".join(
            f"{outcome.metadata[k]} {k.replace('_', ' ')}"
            for k in (
                "zero_vectors",
                "extreme_magnitude",
                "undefined_distance",
                "duplicate_vectors",
            )
        )
        return f"{len(rows)} (source, model) rows; {counts}"  # type: ignore[arg-type]

    run.case("vector", "embeddings_present", has_embeddings)
    run.case("vector", "upsert_skips_unchanged_content", upsert)
    if not models:
        return
    run.case("vector", "similarity_search_finds_itself", similarity_self)
    run.case("vector", "hybrid_search_as_the_guide_calls_it", guide_hybrid_call)
    run.case("vector", "hybrid_search_combines_both", hybrid_both)
    run.case("vector", "hybrid_search_rrf_runs", rrf)
    run.case("vector", "searches_are_recorded_with_latency", latency)
    run.case("vector", "recall_at_10_meets_target", recall)
    run.case("vector", "vector_search_stats_reports", stats_view)


def _sample(conn: psycopg.Connection, model: str) -> object:
    row = conn.execute(
        "SELECT embedding FROM embeddings WHERE model = %s ORDER BY id LIMIT 1", (model,)
    ).fetchone()
    if row is None:
        raise CaseFailed(f"no embedding of {model}")
    return row[0]


def _samples(conn: psycopg.Connection, model: str, n: int) -> list[object]:
    conn.execute("SELECT setseed(0.42)")
    return [
        r[0]
        for r in conn.execute(
            "SELECT embedding FROM embeddings WHERE model = %s ORDER BY random() LIMIT %s",
            (model, n),
        ).fetchall()
    ]
