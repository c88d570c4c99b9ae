"""Search quality on a real labelled collection, through the project's own search functions.

    python benchmarks/search_quality.py                        # SciFact: 5,183 docs, 300 queries
    python benchmarks/search_quality.py --collection cranfield # 1,400 docs, 225 queries
    python benchmarks/search_quality.py --sweep                # also weights, pool and RRF k
    python benchmarks/search_quality.py --quick                # 2 queries, ~12 documents

Starts a project-managed PostgreSQL 18 + pgvector server, applies sql/migrations, embeds the
collection's documents (title and text) with the project's local model (all-MiniLM-L6-v2; the
vectors are cached under .cartrita/, so a second run does not embed again), loads them into
``public.embeddings`` and runs the index pass (``ensure_indexes``: index choice and keyword
statistics) and the effort tuning. ``--exact-below 1000`` gives the collection an HNSW index
(by the project's rule it is scanned exactly below 10,000 rows), to see the tuning on real text.
Then, for every query, one run prints nDCG@10, recall@100 and the p50 latency of a top-10 call
for:

* keyword-only: ``hybrid_search(text, q, 0, 1, -1, n)`` (the keyword side alone);
* vector-only: ``similarity_search(q, -1, n)``;
* hybrid: ``hybrid_search(text, q, 0.7, 0.3, -1, n)`` (the guide's weights);
* RRF: ``hybrid_search_rrf(text, q, n, 60)``;
* every retrieval preset by name: ``hybrid_search(text, q, preset => 'balanced')`` and the
  others in ``search_presets`` (the numbers the shipped presets' descriptions quote).

nDCG@10 comes from the top-10 call, recall@100 from a top-100 call. ``--sweep`` adds
hybrid_search at other weights, larger candidate pools (a pool is 4 x match_count: the top 10 of
a call with match_count 25 ranks a pool of 100) and RRF at other k: the numbers the defaults were
chosen from. Gains: SciFact is binary; Cranfield's inverted codes 1-4 become gains 4-1 and its
code -1 rows are left out (see ../shared/data/ir/cranfield/README.md). The data stays where it
is: nothing is copied into the project.

Collections: SciFact (Wadden et al. 2020, BEIR test split, Thakur et al. 2021; CC BY 4.0 claims,
ODC-By abstracts) and Cranfield (Cleverdon, Cranfield II; Glasgow distribution): research and
benchmarking use with attribution.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from cartrita_assets.embeddings.cache import CachedEmbedder
from cartrita_assets.embeddings.embedders import LocalEmbedder
from cartrita_assets.environments import state_dir
from cartrita_assets.local.postgres import LocalPostgres
from cartrita_assets.local.system import free_port
from cartrita_assets.pg.connect import connect
from cartrita_assets.vectors import tuning
from cartrita_assets.vectors.indexing import EXACT_BELOW, ensure_indexes
from cartrita_assets.vectors.sync import progress_line

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ir"
Log = Callable[[str], None]

MODES = {
    "keyword-only": "SELECT source_id FROM public.hybrid_search(%(text)s, %(q)s, 0, 1, -1, %(n)s, "
    "NULL, %(model)s)",
    "vector-only": "SELECT source_id FROM public.similarity_search(%(q)s, -1, %(n)s, NULL, "
    "%(model)s)",
    "hybrid_search": "SELECT source_id FROM public.hybrid_search(%(text)s, %(q)s, %(vw)s, "
    "%(kw)s, -1, %(n)s, NULL, %(model)s)",
    "hybrid_search_rrf": "SELECT source_id FROM public.hybrid_search_rrf(%(text)s, %(q)s, %(n)s, "
    "%(k)s, NULL, %(model)s)",
}
GUIDE = {"vw": 0.7, "kw": 0.3, "k": 60}
# every retrieval preset (migration 0011) by name, as the application calls it
PRESET = (
    "SELECT source_id FROM public.hybrid_search(%(text)s, %(q)s, preset => %(preset)s, "
    "match_count => %(n)s, model_filter => %(model)s)"
)


def _sibling(name: str) -> ModuleType:
    """Another script of this folder, imported by path (benchmarks/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Collection:
    name: str
    docs: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id -> document id -> gain (> 0)


def _jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def load_collection(name: str, data: Path = DATA) -> Collection:
    """Documents (title and text), queries and positive gains of one collection."""
    folder = data / name
    docs = {d["id"]: f"{d['title'].strip()}\n\n{d['text']}".strip() for d in _jsonl(
        folder / "corpus.jsonl")}  # fmt: skip
    queries = {q["id"]: q["text"] for q in _jsonl(folder / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    for line in (folder / "qrels.tsv").read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")
        gain = _gain(name, int(score))
        if gain > 0:
            qrels.setdefault(qid, {})[did] = gain
    return Collection(name, docs, {q: t for q, t in queries.items() if q in qrels}, qrels)


def _gain(collection: str, score: int) -> int:
    """SciFact: binary. Cranfield: code 1 (most relevant) to 4 (least) -> 4..1; -1 -> 0."""
    if collection == "cranfield":
        return 5 - score if 1 <= score <= 4 else 0
    return score


def subset(c: Collection, queries: int, other_docs: int) -> Collection:
    """The first ``queries`` queries, their judged documents and ``other_docs`` more."""
    keep_q = sorted(c.queries, key=_natural)[:queries]
    judged = {d for q in keep_q for d in c.qrels[q]}
    others = [d for d in sorted(c.docs, key=_natural) if d not in judged][:other_docs]
    docs = {d: c.docs[d] for d in [*sorted(judged), *others] if d in c.docs}
    return Collection(c.name, docs, {q: c.queries[q] for q in keep_q},
                      {q: c.qrels[q] for q in keep_q})  # fmt: skip


def _natural(key: str) -> tuple[int, str]:
    return (int(key), key) if key.isdigit() else (1 << 62, key)


def embed_all(texts: list[str], embedder: object, log: Log, what: str) -> list[np.ndarray]:
    """Embed in batches of 64, with a progress line (rows, rate, ETA) every 5 s."""
    out: list[np.ndarray] = []
    started, next_report = time.perf_counter(), time.monotonic() + 5
    for i in range(0, len(texts), 64):
        out += [np.asarray(v, dtype=np.float32) for v in embedder.embed(texts[i : i + 64])]  # type: ignore[attr-defined]
        if time.monotonic() >= next_report or len(out) == len(texts):
            log(f"{what}: {progress_line(len(out), len(texts), time.perf_counter() - started)}")
            next_report = time.monotonic() + 5
    return out


def load(conn: psycopg.Connection, c: Collection, model: str, vectors: list[np.ndarray]) -> None:
    """Binary COPY of the documents into public.embeddings, hashed in SQL."""
    dims = len(vectors[0])
    conn.execute("INSERT INTO public.embedding_models (model, dimensions) VALUES (%s, %s) "
                 "ON CONFLICT (model) DO NOTHING", (model, dims))  # fmt: skip
    conn.execute("CREATE TEMP TABLE quality_load (source_id text, content text, embedding vector)")
    with conn.cursor() as cur:
        with cur.copy("COPY quality_load FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "vector"])
            for (doc_id, text), vec in zip(c.docs.items(), vectors, strict=True):
                copy.write_row((doc_id, text, vec))
    conn.execute(
        "INSERT INTO public.embeddings (source_table, source_id, model, dimensions, content, "
        "content_hash, embedding) SELECT %s, source_id, %s, %s, content, "
        "public.embedding_content_hash(%s, content), embedding FROM quality_load",
        (c.name, model, dims, model),
    )
    conn.execute("DROP TABLE quality_load")
    conn.execute("VACUUM (ANALYZE) public.embeddings")


def ndcg_at_10(found: list[str], gains: dict[str, int]) -> float:
    dcg = sum(gains.get(d, 0) / math.log2(i + 2) for i, d in enumerate(found[:10]))
    ideal = sorted(gains.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(found: list[str], gains: dict[str, int], k: int = 100) -> float:
    return len(set(found[:k]) & set(gains)) / len(gains) if gains else 0.0


@dataclass
class Scores:
    ndcg10: float
    recall100: float
    p50_ms: float

    def row(self, name: str) -> str:
        return f"{name:<28}{self.ndcg10:>10.4f}{self.recall100:>12.4f}{self.p50_ms:>10.2f}"


def evaluate(
    conn: psycopg.Connection,
    c: Collection,
    qvecs: dict[str, np.ndarray],
    mode: str,
    model: str,
    *,
    top: int = 10,
    **knobs: float,
) -> Scores:
    """One mode over every query: nDCG@10 of a top-``top`` call (timed), recall@100."""
    statement = PRESET if mode.startswith("preset ") else MODES[mode]
    if mode.startswith("preset "):
        knobs = {**knobs, "preset": mode.removeprefix("preset ")}
    ndcg, rec, times = [], [], []
    for qid, text in c.queries.items():
        params = {**GUIDE, **knobs, "text": text, "q": qvecs[qid], "model": model}
        started = time.perf_counter()
        found = [r[0] for r in conn.execute(statement, {**params, "n": top}).fetchall()]
        times.append((time.perf_counter() - started) * 1000)
        ndcg.append(ndcg_at_10(found, c.qrels[qid]))
        wide = [r[0] for r in conn.execute(statement, {**params, "n": 100}).fetchall()]
        rec.append(recall_at(wide, c.qrels[qid]))
    return Scores(statistics.mean(ndcg), statistics.mean(rec), statistics.median(times))


def sweep(
    conn: psycopg.Connection,
    c: Collection,
    qvecs: dict[str, np.ndarray],
    model: str,
    log: Log = print,
) -> dict[str, Scores]:
    """hybrid_search at other weights and pools, RRF at other k (nDCG@10 of the top 10)."""
    out: dict[str, Scores] = {}

    def add(name: str, scores: Scores) -> None:
        out[name] = scores
        log(scores.row(name))

    for vw in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        add(
            f"hybrid {vw:.1f}/{1 - vw:.1f}",
            evaluate(conn, c, qvecs, "hybrid_search", model, vw=vw, kw=round(1 - vw, 2)),
        )
    for top in (25, 50):
        add(
            f"hybrid 0.5/0.5 pool {4 * top}",
            _top10_of(conn, c, qvecs, "hybrid_search", model, top, vw=0.5, kw=0.5),
        )
    for k in (10, 30, 100):
        add(f"rrf k={k}", evaluate(conn, c, qvecs, "hybrid_search_rrf", model, k=k))
    add("rrf k=60 pool 100", _top10_of(conn, c, qvecs, "hybrid_search_rrf", model, 25, k=60))
    return out  # fmt: skip


def _top10_of(
    conn: psycopg.Connection,
    c: Collection,
    qvecs: dict[str, np.ndarray],
    mode: str,
    model: str,
    top: int,
    **knobs: float,
) -> Scores:
    """nDCG@10 of the first 10 rows of a call with match_count ``top`` (a pool of 4 x top)."""
    return evaluate(conn, c, qvecs, mode, model, top=top, **knobs)


def run(
    collection: Collection,
    log: Log = print,
    *,
    cache: Path | None = None,
    do_sweep: bool = False,
    exact_below: int = EXACT_BELOW,
) -> dict[str, Scores]:
    """Embed, load, index and evaluate every mode on a throwaway server."""
    embedder: object = LocalEmbedder()
    if cache is not None:
        embedder = CachedEmbedder(embedder, cache)  # type: ignore[arg-type]
    model = embedder.model  # type: ignore[attr-defined]
    docs = embed_all(list(collection.docs.values()), embedder, log, "documents")
    queries = embed_all(list(collection.queries.values()), embedder, log, "queries")
    qvecs = dict(zip(collection.queries, queries, strict=True))
    work = Path(tempfile.mkdtemp(prefix="cartrita-quality-"))
    work.chmod(0o755)
    server = LocalPostgres(base_dir=work / "pg", port=free_port(), durable=False, log=log)
    try:
        settings, _info = _sibling("vector_search").bench_database(server)
        with connect(settings, role="bench") as conn:
            register_vector(conn)
            load(conn, collection, model, docs)
            ensure_indexes(conn, log, exact_below=exact_below)
            for model_name, kind in conn.execute(
                "SELECT model, index_kind FROM public.embedding_models"
            ).fetchall():
                tuning.tune_model(conn, model_name, kind, log)
        with connect(settings, role="bench") as conn:  # the database's defaults
            register_vector(conn)
            results: dict[str, Scores] = {}
            presets = [r[0] for r in conn.execute("SELECT name FROM search_presets ORDER BY 1")]
            for mode in [*MODES, *(f"preset {name}" for name in presets)]:
                results[mode] = evaluate(conn, collection, qvecs, mode, model)
                log(results[mode].row(mode))
            if do_sweep:
                results |= sweep(conn, collection, qvecs, model, log)
        return results
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def report(c: Collection, results: dict[str, Scores]) -> list[str]:
    lines = [
        f"{c.name}: {len(c.docs)} documents, {len(c.queries)} queries, "
        f"{sum(len(g) for g in c.qrels.values())} judgments",
        f"{'mode':<28}{'nDCG@10':>10}{'recall@100':>12}{'p50 ms':>10}",
    ]
    lines += [s.row(name) for name, s in results.items()]
    return lines


def main(argv: list[str] | None = None) -> dict[str, Scores]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--collection", default="scifact", choices=("scifact", "cranfield"))
    parser.add_argument("--data", type=Path, default=DATA, help="folder of the collections")
    parser.add_argument("--queries", type=int, help="only the first N queries (and their docs)")
    parser.add_argument("--quick", action="store_true", help="2 queries, about 12 documents")
    parser.add_argument("--sweep", action="store_true", help="also other weights, pools and k")
    parser.add_argument("--no-cache", action="store_true", help="embed without the cache")
    parser.add_argument(
        "--exact-below", type=int, default=EXACT_BELOW, help="an ANN index from this many rows"
    )
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    c = load_collection(args.collection, args.data)
    if args.quick:  # it still runs end to end; embedding the documents is most of its time
        c = subset(c, 2, 10)
    elif args.queries:
        c = subset(c, args.queries, len(c.docs))
    cache = None if args.no_cache or args.quick else state_dir() / "bench" / "vectors.sqlite"
    results = run(c, cache=cache, do_sweep=args.sweep, exact_below=args.exact_below)
    print("\n".join(report(c, results)))
    print(f"({time.perf_counter() - started:.0f}s in all)")
    if args.json:
        args.json.write_text(json.dumps(
            {k: dataclasses.asdict(v) for k, v in results.items()}, indent=2) + "\n")  # fmt: skip
    return results


if __name__ == "__main__":
    main()
