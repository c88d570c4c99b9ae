"""The v2 search functions under concurrent load while the ANN index is rebuilt and rows change.

    python benchmarks/search_load.py                             # 100,000 rows, 8 clients, 60 s
    python benchmarks/search_load.py --rows 20000 --seconds 15   # the CI size (tests/reliability)
    python benchmarks/search_load.py --json load.json            # also save the numbers
    python benchmarks/search_load.py --quick                     # tiny, seconds: it still runs

Starts a project-managed PostgreSQL 18 + pgvector server, applies sql/migrations, generates and
loads ``--rows`` clustered 384-dim unit vectors with their texts (``make_dataset`` and ``load``
of ``benchmarks/vector_search.py``) and builds the model's index with
``cartrita_assets.vectors.indexing.ensure_indexes`` (the volume rule: HNSW from 10,000 rows).

Then, for ``--seconds``, ``--clients`` threads (one autocommit connection each) call, in turn,
``similarity_search(q, -1, 10, NULL, model)`` and ``hybrid_search(text, q, 0.7, 0.3, -1, 10,
NULL, model)``, where ``q`` is a stored vector (of rows that are never written to), so
similarity_search's first row must be that row itself. Meanwhile:

* the main thread runs ``ensure_indexes(..., force=True)``: CREATE INDEX CONCURRENTLY of a new
  index, DROP INDEX CONCURRENTLY of the old one, ALTER INDEX ... RENAME, ANALYZE; again while
  another build fits in the time left. A build that outlasts ``--seconds`` extends the load
  until it has finished (and a tenth of ``--seconds``, at most 5 s, more), so the swap is
  always under load and there is load after it to compare with;
* a writer thread updates ``--updates`` other rows' embedding and text through
  ``upsert_embedding``, deletes ``--deletes`` rows in small batches and re-inserts them with
  the same ids a few seconds later.

Reported: calls, errors (with the first messages and the re-index statement running when each
happened), p50/p95/p99 per function, throughput, per-second p95 during vs outside the index
builds. Checked: no error; every call returned 10 rows; no call that started after a delete
had committed, and ended before the re-insert began, returned a deleted id; similarity_search
returned the query's own row first in at least 99.5% of calls (HNSW is approximate, so a rare
miss is possible; with hnsw.ef_search >= 80 none are expected). Exit code 1 when a check fails.

On a shared machine other processes inflate the latencies: the summary says how much of the
machine's CPU they used during the load.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from cartrita_assets.envfile import PostgresSettings
from cartrita_assets.local.postgres import LocalPostgres
from cartrita_assets.local.system import free_port
from cartrita_assets.pg.connect import connect
from cartrita_assets.vectors.indexing import ensure_indexes, index_name


def _sibling(name: str) -> ModuleType:
    """Another script of this folder, imported by path (benchmarks/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


vector_search = _sibling("vector_search")
MODEL: str = vector_search.MODEL
SOURCE_TABLE: str = vector_search.SOURCE_TABLE
K = 10
MAX_MISS_RATE = 0.005  # similarity_search self-queries whose first row is not the row itself
SIMILARITY_SQL = "SELECT id, similarity FROM public.similarity_search(%s, -1, 10, NULL, %s)"
HYBRID_SQL = "SELECT id FROM public.hybrid_search(%s, %s, 0.7, 0.3, -1, 10, NULL, %s)"
KINDS = ("similarity_search", "hybrid_search")
WRITE_TICK = 0.25  # seconds between the writer's steps
Log = Callable[[str], None]


@dataclasses.dataclass(slots=True)
class Call:
    """One search call; times in seconds since the load started."""

    kind: str
    query: int  # index into the self-query rows
    started: float
    ended: float
    ids: tuple[int, ...]


@dataclasses.dataclass
class Statement:
    """One statement ensure_indexes ran on the re-index connection."""

    phase: str  # create / drop old / drop leftover / rename / analyze / other
    started: float
    ended: float
    text: str
    error: str | None = None


@dataclasses.dataclass
class Reindex:
    """One ensure_indexes(force=True) run during the load."""

    started: float
    ended: float = math.nan
    statements: list[Statement] = dataclasses.field(default_factory=list)
    error: str | None = None

    @property
    def build(self) -> tuple[float, float]:
        """From the start of CREATE INDEX CONCURRENTLY to the end of the rename."""
        create = [s.started for s in self.statements if s.phase == "create"]
        rename = [s.ended for s in self.statements if s.phase == "rename"]
        return (create[0] if create else self.started, rename[-1] if rename else self.ended)

    def phase_at(self, t: float) -> str | None:
        for s in self.statements:
            if s.started <= t <= s.ended:
                return s.phase
        return None


@dataclasses.dataclass
class Writes:
    """What the writer thread did; times in seconds since the load started."""

    updated: int = 0
    update_actions: dict[str, int] = dataclasses.field(default_factory=dict)
    deleted: dict[int, float] = dataclasses.field(default_factory=dict)  # id -> delete committed
    reinserted: dict[int, float] = dataclasses.field(default_factory=dict)  # id -> insert began
    errors: list[str] = dataclasses.field(default_factory=list)
    first: float = math.nan
    last: float = math.nan


@dataclasses.dataclass
class LoadResult:
    """Everything one run measured (``summarise`` turns it into numbers and checks)."""

    rows: int
    dims: int
    clients: int
    seconds: float  # requested
    duration: float = 0.0  # the load really ran this long
    calls: list[Call] = dataclasses.field(default_factory=list)
    errors: list[tuple[float, str, str]] = dataclasses.field(default_factory=list)
    order_violations: list[float] = dataclasses.field(default_factory=list)  # call start times
    query_ids: list[int] = dataclasses.field(default_factory=list)
    reindexes: list[Reindex] = dataclasses.field(default_factory=list)
    writes: Writes = dataclasses.field(default_factory=Writes)
    index: dict[str, object] = dataclasses.field(default_factory=dict)
    setup: dict[str, object] = dataclasses.field(default_factory=dict)
    other_cpu: float | None = None  # share of the machine used by other processes meanwhile
    quiet: dict[str, object] = dataclasses.field(default_factory=dict)  # self-hits, after


class _Recorder:
    """The re-index connection as ensure_indexes sees it: every statement is timed."""

    def __init__(self, conn: psycopg.Connection, origin: float, into: Reindex) -> None:
        self._conn = conn
        self._origin = origin
        self._into = into
        self._new = index_name(MODEL) + "_new"

    def execute(self, query: object, params: object = None, **kwargs: object) -> psycopg.Cursor:
        text = query.as_string(self._conn) if isinstance(query, sql.Composable) else str(query)
        started = time.perf_counter() - self._origin
        error = None
        try:
            return self._conn.execute(query, params, **kwargs)  # type: ignore[arg-type]
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}".strip()
            raise
        finally:
            ended = time.perf_counter() - self._origin
            self._into.statements.append(
                Statement(_phase(text, self._new), started, ended, " ".join(text.split())[:160],
                          error)
            )  # fmt: skip

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)


def _phase(text: str, new_name: str) -> str:
    upper = text.lstrip().upper()
    if upper.startswith("CREATE INDEX CONCURRENTLY"):
        return "create"
    if upper.startswith("DROP INDEX CONCURRENTLY"):
        return "drop leftover" if new_name in text else "drop old"
    if upper.startswith("ALTER INDEX"):
        return "rename"
    if upper.startswith("ANALYZE"):
        return "analyze"
    return "other"


def _client(
    n: int,
    conn: psycopg.Connection,
    settings: PostgresSettings,
    queries: tuple[np.ndarray, list[str]],
    origin: float,
    stop: threading.Event,
    result: LoadResult,
    calls: list[Call],
) -> None:
    """One client: alternate similarity_search and hybrid_search until ``stop``."""
    vectors, texts = queries
    rng = random.Random(1000 + n)
    turn = n % 2
    while not stop.is_set():
        q = rng.randrange(len(texts))
        kind = KINDS[turn]
        turn ^= 1
        started = time.perf_counter()
        try:
            if kind == "similarity_search":
                rows = conn.execute(SIMILARITY_SQL, (vectors[q], MODEL)).fetchall()
            else:
                rows = conn.execute(HYBRID_SQL, (texts[q], vectors[q], MODEL)).fetchall()
        except Exception as exc:  # every error counts, whatever it is
            result.errors.append(
                (started - origin, kind, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
            )
            if conn.closed or conn.broken:
                try:
                    conn = connect(settings, role=f"load client {n}")
                    register_vector(conn)
                except Exception as again:
                    result.errors.append((time.perf_counter() - origin, "reconnect", str(again)))
                    stop.wait(0.2)
            continue
        ended = time.perf_counter()
        calls.append(Call(kind, q, started - origin, ended - origin, tuple(r[0] for r in rows)))
        if kind == "similarity_search" and any(
            a[1] < b[1] for a, b in zip(rows, rows[1:], strict=False)
        ):
            result.order_violations.append(started - origin)
    conn.close()


def _writer(
    conn: psycopg.Connection,
    data: object,
    row_ids: np.ndarray,
    rows_to_update: list[int],
    rows_to_delete: list[int],
    seconds: float,
    origin: float,
    stop: threading.Event,
    writes: Writes,
    seed: int,
) -> None:
    """Updates, deletes and re-inserts spread over the load window (never the query rows)."""
    rng = np.random.default_rng(seed)
    vectors, texts = data.vectors, data.texts  # type: ignore[attr-defined]
    ticks = max(1, int((seconds - 3.0) / WRITE_TICK))
    per_tick = math.ceil(len(rows_to_update) / ticks)
    per_delete = math.ceil(len(rows_to_delete) / max(1, ticks // 4))
    hold = min(3.0, max(1.0, seconds / 10))  # how long a deleted row stays deleted
    updates, deletes = deque(rows_to_update), deque(rows_to_delete)
    pending: deque[tuple[float, list[int]]] = deque()
    now = lambda: time.perf_counter() - origin  # noqa: E731

    def reinsert(batch: list[int]) -> None:
        began = now()
        try:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO public.embeddings (id, source_table, source_id, model, "
                    "dimensions, content, content_hash, embedding) VALUES (%s, %s, %s, %s, %s, "
                    "%s, public.embedding_content_hash(%s, %s), %s)",
                    [(int(row_ids[r]), SOURCE_TABLE, str(r), MODEL, vectors.shape[1], texts[r],
                      MODEL, texts[r], vectors[r]) for r in batch],
                )  # fmt: skip
            for r in batch:
                writes.reinserted[int(row_ids[r])] = began
        except Exception as exc:
            writes.errors.append(f"{now():.2f}s reinsert: {type(exc).__name__}: {exc}")

    tick_no, next_tick = 0, 0.5
    writes.first = now()
    try:
        while (updates or deletes or pending) and not stop.is_set():
            stop.wait(max(0.0, next_tick - now()))
            while pending and now() - pending[0][0] >= hold:
                reinsert(pending.popleft()[1])
            for _ in range(min(per_tick, len(updates))):
                r = updates.popleft()
                other = int(rng.integers(len(texts)))
                moved = vectors[other] + rng.standard_normal(vectors.shape[1]) * 0.05
                moved = (moved / np.linalg.norm(moved)).astype(np.float32)
                try:
                    action = conn.execute(
                        "SELECT action FROM public.upsert_embedding(%s, %s, %s, %s, %s)",
                        (SOURCE_TABLE, str(r), f"{texts[other]} Revised {r}.", moved, MODEL),
                    ).fetchone()[0]  # type: ignore[index]
                    writes.updated += 1
                    writes.update_actions[action] = writes.update_actions.get(action, 0) + 1
                except Exception as exc:
                    writes.errors.append(f"{now():.2f}s upsert: {type(exc).__name__}: {exc}")
            if deletes and now() >= seconds - hold - 1.0:
                deletes.clear()  # too late to re-insert them inside the window
            if tick_no % 4 == 0 and deletes:
                batch = [deletes.popleft() for _ in range(min(per_delete, len(deletes)))]
                try:
                    gone = conn.execute(
                        "DELETE FROM public.embeddings WHERE id = ANY(%s) RETURNING id",
                        ([int(row_ids[r]) for r in batch],),
                    ).fetchall()
                    done = now()  # autocommit: committed and visible from here on
                    for (i,) in gone:
                        writes.deleted[int(i)] = done
                    pending.append((done, batch))
                except Exception as exc:
                    writes.errors.append(f"{now():.2f}s delete: {type(exc).__name__}: {exc}")
            tick_no += 1
            next_tick += WRITE_TICK
    finally:
        while pending:
            reinsert(pending.popleft()[1])
        writes.last = now()
        conn.close()


def _server_jiffies(postmaster: int) -> int:
    """CPU jiffies of one PostgreSQL server: the postmaster, its reaped and its live children."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        if pid == postmaster:
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        elif int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total


def run_load(
    settings: PostgresSettings,
    data: object,
    row_ids: np.ndarray,
    *,
    clients: int = 8,
    seconds: float = 60.0,
    updates: int = 300,
    deletes: int = 100,
    max_reindexes: int | None = None,
    postmaster: int | None = None,
    seed: int = 42,
    log: Log = print,
) -> LoadResult:
    """The load case itself on a loaded, indexed database: clients + re-index + writes.

    ``data`` is a ``vector_search.Dataset`` whose ``query_rows`` are the self-queries;
    ``row_ids[i]`` is the ``embeddings.id`` of its row ``i``.
    """
    rows, dims = data.vectors.shape  # type: ignore[attr-defined]
    query_rows = [int(r) for r in data.query_rows]  # type: ignore[attr-defined]
    result = LoadResult(rows=rows, dims=dims, clients=clients, seconds=seconds)
    result.query_ids = [int(row_ids[r]) for r in query_rows]
    queries = (data.vectors[query_rows], list(data.query_texts))  # type: ignore[attr-defined]
    protected = set(query_rows)
    others = [r for r in random.Random(seed).sample(range(rows), rows) if r not in protected]
    rows_to_update, rows_to_delete = others[:updates], others[updates : updates + deletes]

    conns = []
    for n in range(clients):
        conn = connect(settings, role=f"load client {n}")
        register_vector(conn)
        conns.append(conn)
    writer_conn = connect(settings, role="load writer")
    register_vector(writer_conn)
    reindex_conn = connect(settings, role="re-index")
    stop = threading.Event()
    per_client: list[list[Call]] = [[] for _ in range(clients)]
    origin = time.perf_counter()
    busy0, total0 = vector_search._machine_jiffies()
    own0 = sum(os.times()[:2]) * os.sysconf("SC_CLK_TCK")
    server0 = _server_jiffies(postmaster) if postmaster else 0
    threads = [
        threading.Thread(target=_client, name=f"client-{n}", daemon=True,
                         args=(n, conns[n], settings, queries, origin, stop, result,
                               per_client[n]))
        for n in range(clients)
    ]  # fmt: skip
    threads.append(threading.Thread(
        target=_writer, name="writer", daemon=True,
        args=(writer_conn, data, row_ids, rows_to_update, rows_to_delete, seconds, origin, stop,
              result.writes, seed),
    ))  # fmt: skip
    for t in threads:
        t.start()
    elapsed = lambda: time.perf_counter() - origin  # noqa: E731
    try:
        lead = min(5.0, seconds / 10)
        stop.wait(lead)  # a stretch of load before the first build
        last_build = 0.0
        while not (max_reindexes is not None and len(result.reindexes) >= max_reindexes):
            if result.reindexes and seconds - elapsed() < 1.2 * last_build:
                break  # another build would not fit in the window
            run = Reindex(started=elapsed())
            result.reindexes.append(run)
            number = len(result.reindexes)
            log(f"[{run.started:6.1f}s] re-index #{number}: ensure_indexes(force=True)")
            try:
                ensure_indexes(
                    _Recorder(reindex_conn, origin, run),  # type: ignore[arg-type]
                    lambda m: log(f"[{elapsed():6.1f}s]   {m}"),
                    force=True,
                )
            except Exception as exc:
                run.error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
                log(f"[{elapsed():6.1f}s] re-index #{number} FAILED: {run.error}")
                if reindex_conn.broken:
                    reindex_conn = connect(settings, role="re-index")
            run.ended = elapsed()
            last_build = run.ended - run.started
            log(f"[{run.ended:6.1f}s] re-index #{number} done in {last_build:.1f}s")
            if run.error:
                break
        # the load goes on to the end of the window, and for a while after the last swap
        after = result.reindexes[-1].ended + lead if result.reindexes else 0.0
        stop.wait(max(0.0, seconds - elapsed(), after - elapsed()))
    finally:
        stop.set()
        busy1, total1 = vector_search._machine_jiffies()
        own1 = sum(os.times()[:2]) * os.sysconf("SC_CLK_TCK")
        server1 = _server_jiffies(postmaster) if postmaster else 0
        result.duration = elapsed()
        for t in threads:
            t.join(timeout=60)
        reindex_conn.close()
    if postmaster and total1 > total0:
        others = busy1 - busy0 - (own1 - own0) - (server1 - server0)
        result.other_cpu = max(0.0, others / (total1 - total0))
    result.calls = sorted((c for calls in per_client for c in calls), key=lambda c: c.started)
    time.sleep(0.6)  # closed backends have flushed their statistics by now
    with connect(settings, role="check") as conn:
        name = index_name(MODEL)
        row = conn.execute(
            "SELECT i.indisvalid, coalesce(s.idx_scan, 0), pg_relation_size(c.oid), "
            "(SELECT count(*) FROM pg_class WHERE relname LIKE 'embeddings_ann_%%'), "
            "(SELECT count(*) FROM public.embeddings), "
            "(SELECT index_kind || ' ' || index_params::text FROM public.embedding_models "
            " WHERE model = %s) "
            "FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
            "LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = c.oid WHERE c.relname = %s",
            (MODEL, name),
        ).fetchone()
    if row:
        result.index = {"name": name, "valid": row[0], "idx_scan_after_swap": row[1],
                        "bytes": row[2], "ann_indexes": row[3], "rows_after": row[4],
                        "kind": row[5]}  # fmt: skip
    result.quiet = _quiet_recheck(settings, queries[0], result.query_ids, dims)
    return result


def _quiet_recheck(
    settings: PostgresSettings, vectors: np.ndarray, query_ids: list[int], dims: int
) -> dict[str, object]:
    """After the load, nothing else running: similarity_search's self-hits on the final index,
    and whether a wider ANN search (hnsw.ef_search 400) finds the rows it missed."""
    with connect(settings, role="check") as conn:
        register_vector(conn)
        missed = []
        for qid, vector in zip(query_ids, vectors, strict=True):
            top = conn.execute(SIMILARITY_SQL, (vector, MODEL)).fetchone()
            if not top or top[0] != qid:
                missed.append((qid, vector))
        conn.execute("SET hnsw.ef_search = 400")
        conn.execute("SET hnsw.iterative_scan = relaxed_order")
        raw = vector_search.RAW_SQL.format(d=dims)
        wide = sum(1 for qid, v in missed if qid in {r[0] for r in conn.execute(raw, (v,))})
    return {"queries": len(query_ids), "misses": len(missed),
            "missed_ids": [qid for qid, _ in missed], "found_with_ef_search_400": wide}  # fmt: skip


def run_case(
    work: Path,
    *,
    rows: int = 100000,
    clients: int = 8,
    seconds: float = 60.0,
    dims: int = 384,
    clusters: int = 1000,
    queries: int = 1000,
    updates: int = 300,
    deletes: int = 100,
    max_reindexes: int | None = None,
    seed: int = 42,
    log: Log = print,
) -> LoadResult:
    """Generate, start a server under ``work`` (0755), load, index, run the load, stop it."""
    started = time.perf_counter()
    data = vector_search.make_dataset(rows, dims, clusters, queries, seed)
    generate_s = time.perf_counter() - started
    log(f"generated {rows} x {dims} vectors, {clusters} clusters in {generate_s:.1f}s")
    server = LocalPostgres(base_dir=work / "pg", port=free_port(), durable=False, log=log)
    try:
        settings, info = vector_search.bench_database(server)
        version, pgvector = info["version"], info["pgvector"]
        with connect(settings, role="bench") as conn:
            register_vector(conn)
            load_s = vector_search.load(conn, data, dims)
            log(f"PostgreSQL {version}, pgvector {pgvector}: loaded {rows} rows in {load_s:.1f}s")
            ids = dict(conn.execute(
                "SELECT source_id::integer, id FROM public.embeddings WHERE model = %s", (MODEL,)
            ).fetchall())  # fmt: skip
            row_ids = np.array([ids[i] for i in range(rows)], dtype=np.int64)
            built = time.perf_counter()
            decisions = ensure_indexes(conn, log)  # exact_below default: HNSW from 10,000 rows
            index_s = time.perf_counter() - built
        postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
        result = run_load(
            settings, data, row_ids, clients=clients, seconds=seconds, updates=updates,
            deletes=deletes, max_reindexes=max_reindexes, postmaster=postmaster, seed=seed,
            log=log,
        )  # fmt: skip
        result.setup = {
            "postgres": version, "pgvector": pgvector, "generate_s": generate_s,
            "load_s": load_s, "index_s": index_s, "clusters": clusters, "queries": queries,
            "seed": seed, "index": [d.as_row() for d in decisions],
            "index_reason": decisions[0].reason if decisions else None,
            "loadavg_after": os.getloadavg(), "cpus": os.cpu_count(),
        }  # fmt: skip
        return result
    finally:
        server.stop()


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"calls": 0}
    ms = np.array(values) * 1000
    return {"calls": len(values), "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max()), "mean_ms": float(ms.mean())}  # fmt: skip


def summarise(result: LoadResult) -> dict[str, object]:
    """The numbers and the checks of one run (what is printed and saved as JSON)."""
    calls = result.calls
    windows = [r.build for r in result.reindexes]

    def building(t: float) -> bool:
        return any(a <= t <= b for a, b in windows)

    latency = {k: _percentiles([c.ended - c.started for c in calls if c.kind == k]) for k in KINDS}
    latency["all"] = _percentiles([c.ended - c.started for c in calls])
    during = _percentiles([c.ended - c.started for c in calls if building(c.started)])
    outside = _percentiles([c.ended - c.started for c in calls if not building(c.started)])
    # per-second p95: a second counts as "during" when at least half of it overlaps a build
    per_second: dict[str, list[float]] = {"during": [], "outside": []}
    buckets: dict[int, list[float]] = {}
    for c in calls:
        buckets.setdefault(int(c.started), []).append((c.ended - c.started) * 1000)
    for second, ms in sorted(buckets.items()):
        if len(ms) < 5 or second + 1 > result.duration:
            continue
        overlap = sum(max(0.0, min(b, second + 1) - max(a, second)) for a, b in windows)
        per_second["during" if overlap >= 0.5 else "outside"].append(float(np.percentile(ms, 95)))
    # consistency
    sims = [c for c in calls if c.kind == "similarity_search"]
    misses = [c for c in sims if not c.ids or c.ids[0] != result.query_ids[c.query]]
    hybrids = [c for c in calls if c.kind == "hybrid_search"]
    hybrid_top = sum(1 for c in hybrids if c.ids and c.ids[0] == result.query_ids[c.query])
    short = [c for c in calls if len(c.ids) != K]
    gone = {
        i: (t, result.writes.reinserted.get(i, math.inf)) for i, t in result.writes.deleted.items()
    }
    deleted_seen = [
        (c.kind, round(c.started, 3), i)
        for c in calls
        for i in c.ids
        if i in gone and c.started > gone[i][0] and c.ended < gone[i][1]
    ]
    # the same ids outside their deleted interval: shows the deleted rows are ones searches find
    deleted_reachable = sum(1 for c in calls for i in c.ids if i in gone) - len(deleted_seen)
    errors = sorted(result.errors)
    reindex_errors = [r.error for r in result.reindexes if r.error]

    def phase(t: float) -> str:
        for r in result.reindexes:
            if (p := r.phase_at(t)) is not None:
                return f"during re-index: {p}"
            a, b = r.build
            if a <= t <= b:
                return "during re-index: between statements"
        return "no re-index statement running"

    build_starts = [r.build[0] for r in result.reindexes]
    build_ends = [r.build[1] for r in result.reindexes]
    first_call = calls[0].started if calls else math.nan
    last_call = max((c.ended for c in calls), default=math.nan)
    overlapped = bool(result.reindexes) and all(
        not r.error
        and first_call < r.build[0]
        and r.build[1] < last_call
        and any(r.build[0] <= c.started <= r.build[1] for c in calls)
        and any(c.started > r.build[1] for c in calls)
        for r in result.reindexes
    )
    miss_rate = len(misses) / len(sims) if sims else 1.0

    def period(t: float) -> str:
        if not windows or t < windows[0][0]:
            return "before the first build"
        if building(t):
            return "during a build"
        return "after the last swap" if t > windows[-1][1] else "between builds"

    missed_calls = {id(c) for c in misses}
    by_period: dict[str, list[int]] = {}
    for c in sims:
        counts = by_period.setdefault(period(c.started), [0, 0])
        counts[1] += 1
        counts[0] += id(c) in missed_calls
    missed_queries = sorted({result.query_ids[c.query] for c in misses})
    quiet_missed = set(result.quiet.get("missed_ids", ()))  # type: ignore[call-overload]
    checks = {
        "no search errors": not errors,
        "re-index and writes without errors": not reindex_errors and not result.writes.errors,
        f"every call returned {K} rows": not short and bool(calls),
        "no deleted id returned": not deleted_seen,
        f"self-hit misses <= {MAX_MISS_RATE:.1%}": miss_rate <= MAX_MISS_RATE,
        "re-index (CREATE/DROP CONCURRENTLY + rename) ran under load": overlapped,
    }
    return {
        "rows": result.rows, "dims": result.dims, "clients": result.clients,
        "seconds": result.seconds, "duration_s": result.duration, "setup": result.setup,
        "index_after": result.index, "other_processes_cpu_share": result.other_cpu,
        "calls": {k: v.get("calls", 0) for k, v in latency.items()},
        "throughput_per_s": len(calls) / result.duration if result.duration else 0.0,
        "latency": latency,
        "latency_by_build": {"during": during, "outside": outside},
        "per_second_p95_ms": {
            k: {"seconds": len(v), "median": float(np.median(v)) if v else None,
                "max": max(v) if v else None, "series": v}
            for k, v in per_second.items()
        },
        "errors": {
            "count": len(errors),
            "first": [{"at_s": round(t, 3), "kind": k, "message": m, "when": phase(t)}
                      for t, k, m in errors[:5]],
            "reindex": reindex_errors, "writes": result.writes.errors[:5],
        },
        "reindexes": [
            {"started_s": r.started, "ended_s": r.ended, "build_s": [a, b], "error": r.error,
             "statements": [dataclasses.asdict(s) for s in r.statements]}
            for r, (a, b) in zip(result.reindexes, windows, strict=True)
        ],
        "calls_during_build": sum(1 for c in calls if building(c.started)),
        "calls_after_last_swap": sum(1 for c in calls if build_ends and c.started > build_ends[-1]),
        "first_build_started_s": build_starts[0] if build_starts else None,
        "writes": {
            "updated": result.writes.updated, "update_actions": result.writes.update_actions,
            "deleted": len(result.writes.deleted), "reinserted": len(result.writes.reinserted),
            "between_s": [result.writes.first, result.writes.last],
        },
        "consistency": {
            "similarity_calls": len(sims), "self_hit_misses": len(misses),
            "self_hit_miss_rate": miss_rate,
            "self_hit_misses_by_period": by_period,
            "missed_query_rows": len(missed_queries),
            "missed_query_rows_also_missed_quietly": len(set(missed_queries) & quiet_missed),
            "quiet_recheck": {k: v for k, v in result.quiet.items() if k != "missed_ids"},
            "miss_examples": [{"at_s": round(c.started, 3), "expected": result.query_ids[c.query],
                               "got": list(c.ids[:3])} for c in misses[:5]],
            "calls_without_10_rows": len(short),
            "short_examples": [{"at_s": round(c.started, 3), "kind": c.kind, "rows": len(c.ids)}
                               for c in short[:5]],
            "deleted_ids_returned": len(deleted_seen),
            "deleted_examples": deleted_seen[:5],
            "deleted_rows_returned_while_present": deleted_reachable,
            "similarity_order_violations": len(result.order_violations),
            "hybrid_self_top1_rate": hybrid_top / len(hybrids) if hybrids else None,
        },
        "checks": checks,
    }  # fmt: skip


def report_lines(s: dict) -> list[str]:
    """The summary table and the PASS/FAIL lines."""
    setup, index = s["setup"], s["index_after"]
    out = ["=" * 86]
    out.append(f"{s['rows']} rows x {s['dims']} dims, {s['clients']} clients, "
               f"{s['seconds']:g} s asked, {s['duration_s']:.1f} s run; PostgreSQL "
               f"{setup.get('postgres')}, pgvector {setup.get('pgvector')}")  # fmt: skip
    out.append(f"setup: generate {setup.get('generate_s', 0):.1f}s, "
               f"load {setup.get('load_s', 0):.1f}s, initial index "
               f"{setup.get('index_s', 0):.1f}s ({setup.get('index_reason')})")  # fmt: skip
    out.append(f"index after the load: {index.get('name')} {index.get('kind')}, "
               f"valid {index.get('valid')}, {index.get('idx_scan_after_swap')} scans since the "
               f"last swap, {index.get('ann_indexes')} ANN index(es), "
               f"{index.get('rows_after')} rows")  # fmt: skip
    for n, r in enumerate(s["reindexes"], 1):
        steps = ", ".join(
            f"{st['phase']} {st['started']:.1f}-{st['ended']:.1f}s"
            for st in r["statements"]
            if st["phase"] in ("create", "drop old", "rename", "analyze")
        )
        out.append(f"re-index #{n} (force=True) {r['started_s']:.1f}-{r['ended_s']:.1f}s: {steps}"
                   + (f"  ERROR {r['error']}" if r["error"] else ""))  # fmt: skip
    w = s["writes"]
    out.append(f"writes {w['between_s'][0]:.1f}-{w['between_s'][1]:.1f}s: {w['updated']} "
               f"upsert_embedding {w['update_actions']}, {w['deleted']} deleted, "
               f"{w['reinserted']} re-inserted (same ids), "
               f"{len(s['errors']['writes'])} write errors")  # fmt: skip
    out.append("")
    out.append(f"{'calls':<24}{'count':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"
               f"{'mean ms':>9}")  # fmt: skip
    rows = {**s["latency"], "during index build": s["latency_by_build"]["during"],
            "outside index build": s["latency_by_build"]["outside"]}  # fmt: skip
    for name, v in rows.items():
        if not v.get("calls"):
            out.append(f"{name:<24}{0:>8}")
            continue
        out.append(f"{name:<24}{v['calls']:>8}{v['p50_ms']:>9.2f}{v['p95_ms']:>9.2f}"
                   f"{v['p99_ms']:>9.2f}{v['max_ms']:>9.1f}{v['mean_ms']:>9.2f}")  # fmt: skip
    out.append(f"throughput {s['throughput_per_s']:.0f} calls/s; "
               f"{s['calls_during_build']} calls started during a build, "
               f"{s['calls_after_last_swap']} after the last swap")  # fmt: skip
    for k, v in s["per_second_p95_ms"].items():
        if v["seconds"]:
            out.append(f"per-second p95 {k + ' build':<14} over {v['seconds']:>3} s: median "
                       f"{v['median']:.2f} ms, max {v['max']:.2f} ms")  # fmt: skip
    c = s["consistency"]
    out.append("")
    out.append(f"similarity_search self-hits: {c['similarity_calls'] - c['self_hit_misses']}/"
               f"{c['similarity_calls']} (misses {c['self_hit_misses']}, "
               f"{c['self_hit_miss_rate']:.3%}) {c['miss_examples'] or ''}")  # fmt: skip
    periods = ", ".join(f"{k} {m}/{n}" for k, (m, n) in c["self_hit_misses_by_period"].items())
    quiet = c["quiet_recheck"]
    out.append(f"  misses by period: {periods}; {c['missed_query_rows']} distinct query rows of "
               f"{setup.get('queries')} missed under load")  # fmt: skip
    if quiet:
        out.append(f"  quiet re-check after the load (final index, nothing else running): "
                   f"{quiet['misses']}/{quiet['queries']} query rows not first "
                   f"({c['missed_query_rows_also_missed_quietly']} of them also missed under "
                   f"load); a raw ANN search with hnsw.ef_search 400 finds "
                   f"{quiet['found_with_ef_search_400']} of those {quiet['misses']}")  # fmt: skip
    out.append(f"calls without {K} rows: {c['calls_without_10_rows']} "
               f"{c['short_examples'] or ''}")  # fmt: skip
    out.append(f"deleted ids returned after their delete: {c['deleted_ids_returned']} "
               f"{c['deleted_examples'] or ''}(the same rows were returned "
               f"{c['deleted_rows_returned_while_present']} times while present)")  # fmt: skip
    out.append(f"similarity_search rows out of order: {c['similarity_order_violations']}; "
               "hybrid_search own row first (info): "
               f"{c['hybrid_self_top1_rate'] or 0:.1%}")  # fmt: skip
    e = s["errors"]
    out.append(f"search errors: {e['count']}")
    for err in e["first"]:
        out.append(f"  at {err['at_s']}s {err['kind']} ({err['when']}): {err['message'][:300]}")
    for err in e["reindex"] + e["writes"]:
        out.append(f"  {err[:300]}")
    if s["other_processes_cpu_share"] is not None:
        busy = s["other_processes_cpu_share"]
        out.append(f"other processes used {busy:.0%} of this machine's {setup.get('cpus')} "
                   "CPUs during the load"
                   + (": latencies are pessimistic" if busy > 0.1 else ""))  # fmt: skip
    out.append("")
    for name, ok in s["checks"].items():
        out.append(f"{'PASS' if ok else 'FAIL'}  {name}")
    out.append("=" * 86)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100000, help="vectors to load")
    parser.add_argument("--clients", type=int, default=8, help="concurrent search clients")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load")
    parser.add_argument("--dims", type=int, default=384, help="vector dimension")
    parser.add_argument("--clusters", type=int, default=1000, help="topics in the data")
    parser.add_argument("--queries", type=int, default=1000, help="stored rows used as queries")
    parser.add_argument("--updates", type=int, default=300, help="rows re-embedded meanwhile")
    parser.add_argument("--deletes", type=int, default=100, help="rows deleted and re-inserted")
    parser.add_argument("--max-reindexes", type=int, help="at most this many forced builds")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--quick", action="store_true", help="tiny case, seconds: it still runs")
    args = parser.parse_args()
    if args.quick:  # 10,000 rows: the smallest table the volume rule gives an HNSW index;
        # 64 dimensions: the two HNSW builds, most of the run, take about half as long
        args.rows, args.clients, args.seconds, args.clusters = 10000, 2, 3.0, 50
        args.dims = 64
        args.queries, args.updates, args.deletes = 50, 20, 10

    work = Path(tempfile.mkdtemp(prefix="cartrita-loadbench-"))
    work.chmod(0o755)  # the server runs as another user
    try:
        result = run_case(
            work, rows=args.rows, clients=args.clients, seconds=args.seconds, dims=args.dims,
            clusters=args.clusters, queries=args.queries, updates=args.updates,
            deletes=args.deletes, max_reindexes=args.max_reindexes, seed=args.seed,
        )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarise(result)
    print("\n".join(report_lines(summary)))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    if not all(summary["checks"].values()):  # type: ignore[union-attr]
        raise SystemExit(1)


if __name__ == "__main__":
    main()
