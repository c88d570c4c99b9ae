"""One ANN index per model, chosen by volume with the rule in SQL (``choose_vector_index``).

The rule (pgvector's guidance; the numbers are parameters):

- fewer than ``exact_below`` rows (10,000): no ANN index, an exact scan is fast and exact;
- the model's vectors fit in ``hnsw_max_bytes`` (2 GiB): HNSW, m 16, ef_construction 64;
- larger: IVFFlat, lists = rows / 1000 up to 1M rows and sqrt(rows) above, probes = sqrt(lists).

Here the index is built after the load with ``CREATE INDEX CONCURRENTLY`` (searches keep running
on the old index or an exact scan), the old one dropped concurrently, the new one renamed into
place, then ``ANALYZE``. An index is kept while the rule's choice and parameters are unchanged;
an IVFFlat index is rebuilt when its model's row count moved 2x from its build (its lists are
k-means centres of the rows it was built on). ``rebuild_vector_indexes()`` applies the same rule
from SQL, in one transaction, for a maintenance window.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import psycopg
from psycopg import sql

Log = Callable[[str], None]
EXACT_BELOW = 10_000
HNSW_MAX_BYTES = 2 * 1024**3
DRIFT_FACTOR = 2.0


@dataclass
class IndexDecision:
    """What the rule chose for one model and what was done about it."""

    model: str
    dimensions: int
    rows: int
    kind: str
    params: dict[str, int]
    reason: str
    action: str  # "built", "kept", "dropped", "none"
    index_name: str | None
    seconds: float = 0.0

    def as_row(self) -> list[object]:
        params = ", ".join(f"{k}={v}" for k, v in self.params.items()) or "-"
        return [self.model, self.rows, self.kind, params, self.action, round(self.seconds, 2)]


def index_name(model: str) -> str:
    """The per-model index name, the same as rebuild_vector_indexes() uses."""
    return "embeddings_ann_" + hashlib.md5(model.encode()).hexdigest()[:16]


def choose(
    conn: psycopg.Connection,
    rows: int,
    dimensions: int,
    exact_below: int = EXACT_BELOW,
    hnsw_max_bytes: int = HNSW_MAX_BYTES,
) -> tuple[str, dict[str, int], str]:
    """The rule, evaluated by the database function so SQL and Python never disagree."""
    kind, params, reason = conn.execute(
        "SELECT kind, params, reason FROM public.choose_vector_index(%s, %s, %s, %s)",
        (rows, dimensions, exact_below, hnsw_max_bytes),
    ).fetchone()  # type: ignore[misc]
    return str(kind), {k: int(v) for k, v in dict(params).items()}, str(reason)


def index_state(conn: psycopg.Connection, name: str) -> tuple[bool, bool] | None:
    """(valid, ready) of an index in public, or None when it does not exist."""
    row = conn.execute(
        "SELECT i.indisvalid, i.indisready FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = %s AND c.relnamespace = 'public'::regnamespace",
        (name,),
    ).fetchone()
    return (bool(row[0]), bool(row[1])) if row else None


def ensure_indexes(
    conn: psycopg.Connection,
    log: Log,
    *,
    exact_below: int = EXACT_BELOW,
    hnsw_max_bytes: int = HNSW_MAX_BYTES,
    force: bool = False,
    force_models: Collection[str] = (),
    maintenance_work_mem: str = "512MB",
) -> list[IndexDecision]:
    """Apply the rule to every model with rows; build, keep or drop each one's index; then
    regenerate the search functions' per-model branches (migration 0009) when the models changed.

    ``force`` rebuilds every ANN index, ``force_models`` only those models' (a model the rule
    gives no ANN index has nothing to rebuild).

    ``conn`` must be in autocommit mode (CONCURRENTLY cannot run in a transaction).
    """
    conn.execute(
        "SELECT set_config('maintenance_work_mem', %s, false)", (maintenance_work_mem,)
    ).fetchone()
    conn.execute(
        "DELETE FROM public.embedding_models m WHERE NOT EXISTS "
        "(SELECT 1 FROM public.embeddings e WHERE e.model = m.model) AND m.index_name IS NULL"
    )
    models = conn.execute(
        "SELECT m.model, m.dimensions, m.index_kind, m.index_params, m.rows_at_build, "
        "(SELECT count(*) FROM public.embeddings e WHERE e.model = m.model) "
        "FROM public.embedding_models m ORDER BY m.model"
    ).fetchall()
    decisions = []
    for model, dims, kind_now, params_now, rows_at_build, rows in models:
        kind, params, reason = choose(conn, int(rows), int(dims), exact_below, hnsw_max_bytes)
        name = index_name(model)
        state = index_state(conn, name)
        decision = IndexDecision(model, int(dims), int(rows), kind, params, reason, "kept", None)
        if kind == "exact":
            decision.action = "dropped" if state is not None else "none"
            if state is not None:
                conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS public.{}").format(
                    sql.Identifier(name)))  # fmt: skip
                log(f"{model}: {rows} rows, dropped its ANN index ({reason})")
        else:
            decision.index_name = name
            stale = _needs_build(kind, params, kind_now, dict(params_now or {}), state,
                                 int(rows), int(rows_at_build))  # fmt: skip
            if force or model in force_models or stale:
                decision.seconds = _build(conn, model, int(dims), kind, params, name, log)
                decision.action = "built"
                log(f"{model}: built {kind} {params} on {rows} rows in {decision.seconds:.1f} s "
                    f"({stale or 'forced'}; {reason})")  # fmt: skip
            else:
                log(f"{model}: kept its {kind} index ({rows} rows; {reason})")
        if decision.action != "kept" or kind_now != kind:
            conn.execute(
                "UPDATE public.embedding_models SET index_kind = %s, index_params = %s, "
                "rows_at_build = %s, built_at = now(), reason = %s, index_name = %s "
                "WHERE model = %s",
                (kind, json.dumps(params), rows, reason, decision.index_name, model),
            )
        decisions.append(decision)
    conn.execute("ANALYZE public.embeddings")
    terms = conn.execute("SELECT public.refresh_keyword_stats()").fetchone()[0]  # type: ignore[index]
    log(f"keyword statistics: {terms} (model, term) document frequencies")
    regenerated = conn.execute("SELECT public.generate_search_functions()").fetchone()[0]  # type: ignore[index]
    if regenerated:
        log(f"regenerated {', '.join(regenerated)} for the models "
            f"{', '.join(d.model for d in decisions) or '(none)'}")  # fmt: skip
    return decisions


def _needs_build(
    kind: str,
    params: dict[str, int],
    kind_now: str,
    params_now: dict[str, object],
    state: tuple[bool, bool] | None,
    rows: int,
    rows_at_build: int,
) -> str | None:
    """Why the index must be (re)built, or None to keep it."""
    if state is None:
        return "no index yet"
    if not all(state):
        return "the index is invalid (an interrupted build)"
    if kind != kind_now:
        return f"the rule now picks {kind} instead of {kind_now}"
    if kind == "hnsw" and {k: int(v) for k, v in params_now.items() if k in params} != params:  # type: ignore[call-overload]
        return f"parameters changed from {params_now} to {params}"
    if (
        kind == "ivfflat"
        and rows_at_build
        and not (rows_at_build / DRIFT_FACTOR <= rows <= rows_at_build * DRIFT_FACTOR)
    ):
        return f"rows moved from {rows_at_build} to {rows} (> {DRIFT_FACTOR:g}x)"
    return None


def _build(
    conn: psycopg.Connection,
    model: str,
    dims: int,
    kind: str,
    params: dict[str, int],
    name: str,
    log: Log,
) -> float:
    """CREATE INDEX CONCURRENTLY a new index, drop the old one concurrently, rename."""
    expr = conn.execute("SELECT public.embedding_index_expression(%s)", (dims,)).fetchone()[0]  # type: ignore[index]
    ops = "vector_cosine_ops" if dims <= 2000 else "halfvec_cosine_ops"
    with_ = (
        f"m = {params['m']}, ef_construction = {params['ef_construction']}"
        if kind == "hnsw"
        else f"lists = {params['lists']}"
    )
    new = name + "_new"
    conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS public.{}").format(sql.Identifier(new)))
    statement = sql.SQL(
        "CREATE INDEX CONCURRENTLY {new} ON public.embeddings USING {am} (({expr}) {ops}) "
        "WITH ({with_}) WHERE model = {model}"
    ).format(
        new=sql.Identifier(new), am=sql.SQL(kind), expr=sql.SQL(expr), ops=sql.SQL(ops),
        with_=sql.SQL(with_), model=sql.Literal(model),
    )  # fmt: skip
    started = time.perf_counter()
    with _ProgressReporter(conn, model, log):
        conn.execute(statement)
    conn.execute(
        sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS public.{}").format(sql.Identifier(name))
    )
    conn.execute(
        sql.SQL("ALTER INDEX public.{} RENAME TO {}").format(
            sql.Identifier(new), sql.Identifier(name)
        )
    )
    return time.perf_counter() - started


class _ProgressReporter:
    """Logs pg_stat_progress_create_index every 10 s while a build runs (from another session)."""

    def __init__(self, conn: psycopg.Connection, model: str, log: Log, every: float = 10.0):
        self._info = conn.info
        self._model = model
        self._log = log
        self._every = every
        self._stop = threading.Event()
        self._pid = conn.info.backend_pid
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _ProgressReporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            with psycopg.connect(
                host=self._info.host,
                port=self._info.port,
                dbname=self._info.dbname,
                user=self._info.user,
                password=self._info.password,
                autocommit=True,
                connect_timeout=10,
                application_name="cartrita-assets progress",
            ) as watch:
                while not self._stop.wait(self._every):
                    row = watch.execute(
                        "SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total "
                        "FROM pg_stat_progress_create_index WHERE pid = %s",
                        (self._pid,),
                    ).fetchone()
                    if row:
                        phase, bd, bt, td, tt = row
                        done = f"{td}/{tt} tuples" if tt else f"{bd}/{bt} blocks"
                        self._log(f"{self._model}: index build {phase}, {done}")
        except psycopg.Error:
            return  # progress is a courtesy; the build itself reports its own errors
