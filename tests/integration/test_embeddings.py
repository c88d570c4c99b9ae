"""The vector library on real PostgreSQL + pgvector with the real local model: change detection,
imports, index choice by volume, and every embeddings_index check failing on a broken setup."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from cartrita_assets.embeddings.embedders import LocalEmbedder
from cartrita_assets.vectors import quality
from cartrita_assets.vectors.indexing import ensure_indexes, index_name
from cartrita_assets.vectors.sources import Source, SourceError, VectorColumn, validate_sources
from cartrita_assets.vectors.sync import EmbeddingModelMismatch, check_embedder, sync_source

pytestmark = pytest.mark.integration

PASSAGES = {
    1: ("Password help", "How to reset a forgotten password and sign in again."),
    2: ("Cookies", "Recipe for chocolate chip cookies: butter, sugar, flour, chocolate."),
    3: ("Databases", "Tuning PostgreSQL vector indexes with HNSW for nearest neighbour search."),
    4: ("Weather", "The weather in Paris is rainy today, bring an umbrella."),
    5: ("Running", "A training plan for your first marathon, week by week."),
    6: ("Plants", "Water succulents sparingly; they store water in their leaves."),
}
QUERIES = {
    "I can't log in, I lost my password": 1,
    "baking sweet biscuits at home": 2,
    "approximate nearest neighbour search in postgres": 3,
    "forecast: rain in France": 4,
    "preparing for a long distance race": 5,
    "caring for cactus-like house plants": 6,
}


class CountingEmbedder:
    """The real local model, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        self.inner = LocalEmbedder()
        self.model = self.inner.model
        self.dimensions = self.inner.dimensions
        self.texts: list[str] = []

    def embed(self, texts):
        self.texts += list(texts)
        return self.inner.embed(texts)


# The tests sharing 'embedder' run on one pytest-xdist worker, which sets it up once
# (support/groups.py says why the mark is written here).
SHARES_EMBEDDER = pytest.mark.xdist_group("test_embeddings")


@pytest.fixture(scope="module")
def embedder() -> CountingEmbedder:
    return CountingEmbedder()


def _passages(conn) -> Source:
    conn.execute("CREATE TABLE passages (id integer PRIMARY KEY, title text, body text)")
    for pid, (title, body) in PASSAGES.items():
        conn.execute("INSERT INTO passages VALUES (%s, %s, %s)", (pid, title, body))
    return Source("passages", "id", ("title", "body"))


def _sync(conn, source, embedder, **kw):
    (counts,) = [c for c in sync_source(conn, source, embedder, lambda _m: None, **kw)]
    return counts


def _vec(values) -> str:
    return "[" + ",".join(f"{float(x):.6f}" for x in values) + "]"


@SHARES_EMBEDDER
def test_semantic_sanity_expected_passage_ranks_first(db, embedder):
    source = _passages(db)
    _sync(db, source, embedder)
    for query, expected in QUERIES.items():
        (q,) = embedder.inner.embed([query])
        top = db.execute(
            "SELECT source_id FROM similarity_search(%s::vector(384), 0, 1, 'passages')",
            (_vec(q),),
        ).fetchone()
        assert top == (str(expected),), query
        hybrid = db.execute(
            "SELECT source_id FROM hybrid_search(%s, %s::vector(384), 0.7, 0.3, 0, 3)",
            (query, _vec(q)),
        ).fetchone()
        assert hybrid == (str(expected),), query


@SHARES_EMBEDDER
def test_change_one_add_one_delete_one_touches_only_those(db, embedder):
    source = _passages(db)
    first = _sync(db, source, embedder)
    assert (first.inserted, first.updated, first.deleted) == (6, 0, 0)
    before = dict(db.execute("SELECT source_id, updated_at FROM embeddings").fetchall())

    db.execute("UPDATE passages SET body = 'Reset your password from the login page.' WHERE id=1")
    db.execute("INSERT INTO passages VALUES (7, 'Tea', 'Green tea brews best below boiling.')")
    db.execute("DELETE FROM passages WHERE id = 6")
    db.execute("UPDATE passages SET body = '  ' || body || '   ' WHERE id = 2")  # whitespace only
    embedder.texts.clear()
    second = _sync(db, source, embedder)

    assert (second.inserted, second.updated, second.deleted, second.unchanged) == (1, 1, 1, 4)
    assert sorted(embedder.texts) == sorted(
        ["Password help\n\nReset your password from the login page.",
         "Tea\n\nGreen tea brews best below boiling."]
    )  # fmt: skip
    after = dict(db.execute("SELECT source_id, updated_at FROM embeddings").fetchall())
    assert set(after) == {"1", "2", "3", "4", "5", "7"}
    assert all(after[k] == before[k] for k in ("2", "3", "4", "5"))  # untouched rows
    third = _sync(db, source, embedder)
    assert (third.inserted, third.updated, third.deleted, third.unchanged) == (0, 0, 0, 6)


@SHARES_EMBEDDER
def test_only_requested_ids_are_compared(db, embedder):
    source = _passages(db)
    _sync(db, source, embedder)
    db.execute("UPDATE passages SET body = 'changed' WHERE id IN (1, 2)")
    embedder.texts.clear()
    counts = _sync(db, source, embedder, ids=["1"])
    assert (counts.updated, counts.unchanged, counts.deleted) == (1, 0, 0)
    assert embedder.texts == ["Password help\n\nchanged"]


@SHARES_EMBEDDER
def test_integer_and_uuid_ids_and_two_models_with_their_own_indexes(db, embedder):
    rng = np.random.default_rng(1)
    db.execute("CREATE TABLE notes (id integer PRIMARY KEY, body text, emb vector(8))")
    db.execute("CREATE TABLE diary (id uuid PRIMARY KEY, body text, emb text)")
    for i in range(30):
        db.execute("INSERT INTO notes VALUES (%s, %s, %s)",
                   (i, f"note {i} about topic {i % 5}", _vec(rng.normal(size=8))))  # fmt: skip
        db.execute("INSERT INTO diary VALUES (%s, %s, %s)",
                   (uuid.uuid4(), f"diary day {i}", _vec(rng.normal(size=8))))  # fmt: skip
    db.execute("UPDATE diary SET emb = 'not a vector' WHERE body = 'diary day 3'")
    db.execute("UPDATE diary SET emb = '[1,2,3]' WHERE body = 'diary day 4'")  # wrong dimension
    db.execute("UPDATE diary SET emb = '[NaN,1,1,1,1,1,1,1]' WHERE body = 'diary day 5'")
    notes = Source("notes", "id", ("body",), (VectorColumn("emb", "v1-8d"),))
    diary = Source("diary", "id", ("body",), (VectorColumn("emb", "v1-8d"),))
    validate_sources(db, [notes, diary])
    counts = sync_source(db, notes, embedder, lambda _m: None)
    counts += sync_source(db, diary, embedder, lambda _m: None)
    by = {(c.source, c.model): c for c in counts}
    assert by[("notes", "v1-8d")].inserted == 30 and by[("notes", embedder.model)].inserted == 30
    skipped = by[("diary", "v1-8d")]
    assert (skipped.inserted, skipped.skipped) == (27, 3)
    assert set(skipped.skipped_reasons) == {
        "emb: not a vector", "emb: not 8 dimensions", "emb: non-finite values"
    }  # fmt: skip
    imported = db.execute(
        "SELECT e.embedding::text = n.emb::text FROM embeddings e JOIN notes n "
        "ON e.source_id = n.id::text WHERE e.model = 'v1-8d' AND e.source_table = 'notes'"
    ).fetchall()
    assert imported and all(r[0] for r in imported)  # imported as they are, not re-embedded
    uuids = db.execute("SELECT source_id FROM embeddings WHERE source_table = 'diary' LIMIT 1")
    uuid.UUID(uuids.fetchone()[0])

    decisions = ensure_indexes(db, lambda _m: None, exact_below=20)
    assert {(d.model, d.kind, d.action) for d in decisions} == {
        ("v1-8d", "hnsw", "built"), (embedder.model, "hnsw", "built")
    }  # fmt: skip
    assert index_name("v1-8d") != index_name(embedder.model)
    assert quality.vector_index_is_valid(db).passed
    plan = quality.explain_search(db, embedder.model, 384, prefer_index=True)
    assert index_name(embedder.model) in plan, plan  # the query's form matches the index
    again = ensure_indexes(db, lambda _m: None, exact_below=20)
    assert {d.action for d in again} == {"kept"}  # idempotent: nothing rebuilt


def test_validation_names_the_missing_column(db):
    _passages(db)
    with pytest.raises(SourceError, match="'summary'"):
        validate_sources(db, [Source("passages", "id", ("summary",))])
    with pytest.raises(SourceError, match="no table public.nope"):
        validate_sources(db, [Source("nope", "id", ("body",))])


@SHARES_EMBEDDER
def test_embedder_of_another_dimension_is_refused(db, embedder):
    db.execute("INSERT INTO embedding_models (model, dimensions) VALUES (%s, 1536)",
               (embedder.model,))  # fmt: skip
    with pytest.raises(EmbeddingModelMismatch, match="stored with 1536 dimensions"):
        check_embedder(db, embedder)


def _clustered(db, n: int, dims: int = 16, model: str = "gen", seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(2, n // 20), dims))
    rows = []
    for i in range(n):
        v = centres[i % len(centres)] + 0.3 * rng.normal(size=dims)
        tag = "".join(chr(97 + int(d)) for d in f"{i:04d}")  # a rare word per row: "tagaabc"
        rows.append((str(i), f"generated row tag{tag} cluster {i % len(centres)}", _vec(v)))
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO embeddings (source_table, source_id, model, dimensions, content, "
            "content_hash, embedding) SELECT 'gen', %s, %s, %s, %s, "
            "embedding_content_hash(%s, %s), %s::vector",
            [(sid, model, dims, text, model, text, v) for sid, text, v in rows],
        )
    db.execute("INSERT INTO embedding_models (model, dimensions) VALUES (%s, %s) "
               "ON CONFLICT DO NOTHING", (model, dims))  # fmt: skip


def test_index_choice_flips_as_volume_crosses_the_thresholds(db):
    _clustered(db, 40)
    log = lambda _m: None  # noqa: E731
    rule = {"exact_below": 50, "hnsw_max_bytes": 16 * 4 * 100}  # HNSW up to 100 rows of 16 dims
    (d,) = ensure_indexes(db, log, **rule)
    assert (d.kind, d.action) == ("exact", "none")
    db.execute("DELETE FROM embeddings WHERE model = 'gen'")
    _clustered(db, 60)
    (d,) = ensure_indexes(db, log, **rule)
    assert (d.kind, d.action, d.params) == ("hnsw", "built", {"m": 16, "ef_construction": 64})
    db.execute("DELETE FROM embeddings WHERE model = 'gen'")
    _clustered(db, 150)
    (d,) = ensure_indexes(db, log, **rule)
    assert (d.kind, d.action) == ("ivfflat", "built")
    assert d.params == {"lists": 1, "probes": 1}  # 150 rows / 1000, at least 1
    assert quality.vector_index_is_valid(db).passed
    sql_rule = db.execute(
        "SELECT index_kind FROM rebuild_vector_indexes(%s, %s)", (50, 16 * 4 * 100)
    ).fetchall()
    assert sql_rule == [("ivfflat",)]  # the SQL maintenance function applies the same rule
    assert quality.vector_index_is_valid(db).passed


def test_ivfflat_is_rebuilt_when_rows_drift_2x(db):
    rule = {"exact_below": 10, "hnsw_max_bytes": 1}
    _clustered(db, 50)
    (d,) = ensure_indexes(db, lambda _m: None, **rule)
    assert (d.kind, d.action) == ("ivfflat", "built")
    db.execute("UPDATE embeddings SET source_id = 'old' || source_id")
    _clustered(db, 60, seed=2)  # 110 rows now: more than 2x the 50 it was built on
    (d,) = ensure_indexes(db, lambda _m: None, **rule)
    assert d.action == "built" and d.rows == 110


# --- every check fails on a deliberately broken setup -------------------------------------------


@pytest.fixture
def indexed(db):
    """600 clustered 16-d rows with an HNSW index: every check passes here."""
    _clustered(db, 600)
    ensure_indexes(db, lambda _m: None, exact_below=100)
    return db


def test_checks_pass_on_a_healthy_index(indexed):
    assert quality.vector_index_is_valid(indexed).passed
    assert quality.similarity_search_finds_itself(indexed).passed
    recall = quality.recall_at_10(indexed)
    assert recall.passed and recall.metadata["recall_at_10"] >= 0.95
    hybrid = quality.hybrid_search_combines_both(indexed)
    assert hybrid.passed, hybrid.problems


def test_vector_index_is_valid_fails_on_missing_or_invalid_index(indexed):
    name = index_name("gen")
    indexed.execute(f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{name}'::regclass")
    outcome = quality.vector_index_is_valid(indexed)
    assert not outcome.passed and "not valid" in " ".join(outcome.problems)
    indexed.execute(f"DROP INDEX {name}")
    outcome = quality.vector_index_is_valid(indexed)
    assert not outcome.passed and "missing" in " ".join(outcome.problems)


def test_similarity_search_finds_itself_fails_when_search_is_broken(indexed):
    # a search that sorts the wrong way round: the farthest rows first
    indexed.execute(
        "CREATE OR REPLACE FUNCTION similarity_search(query_embedding vector, "
        "match_threshold double precision DEFAULT 0.78, match_count integer DEFAULT 10, "
        "source_filter text DEFAULT NULL, model_filter text DEFAULT NULL, "
        "record_metrics boolean DEFAULT false) RETURNS TABLE (id bigint, source_table text, "
        "source_id text, model text, content text, metadata jsonb, similarity double precision) "
        "LANGUAGE sql AS $$ SELECT e.id, e.source_table, e.source_id, e.model, e.content, "
        "e.metadata, 1 - (e.embedding <=> query_embedding) FROM embeddings e "
        "WHERE e.model = model_filter ORDER BY e.embedding <=> query_embedding DESC "
        "LIMIT match_count $$"
    )
    outcome = quality.similarity_search_finds_itself(indexed)
    assert not outcome.passed and outcome.metadata["missed"] > 0


def test_recall_fails_on_a_starved_ivfflat_index(indexed):
    name = index_name("gen")
    indexed.execute(f"DROP INDEX {name}")
    # IVFFlat with a list per 3 rows and one probe: most true neighbours sit in other lists
    indexed.execute(
        f"CREATE INDEX {name} ON embeddings USING ivfflat ((embedding::vector(16)) "
        "vector_cosine_ops) WITH (lists = 200) WHERE model = 'gen'"
    )
    indexed.execute(
        "UPDATE embedding_models SET index_kind = 'ivfflat', "
        "index_params = '{\"lists\": 200, \"probes\": 1}' WHERE model = 'gen'"
    )
    outcome = quality.recall_at_10(indexed)
    assert not outcome.passed and outcome.metadata["recall_at_10"] < 0.95, outcome.metadata


def test_hybrid_search_combines_both_fails_when_it_intersects(indexed):
    indexed.execute(
        "CREATE OR REPLACE FUNCTION hybrid_search(query_text text, query_embedding vector, "
        "vector_weight double precision DEFAULT 0.7, keyword_weight double precision DEFAULT 0.3, "
        "match_threshold double precision DEFAULT 0.5, match_count integer DEFAULT 10, "
        "source_filter text DEFAULT NULL, model_filter text DEFAULT NULL, "
        "record_metrics boolean DEFAULT false) RETURNS TABLE (id bigint, source_table text, "
        "source_id text, model text, content text, metadata jsonb, vector_score double "
        "precision, keyword_score double precision, combined_score double precision) "
        "LANGUAGE sql AS $$ SELECT e.id, e.source_table, e.source_id, e.model, e.content, "
        "e.metadata, 1 - (e.embedding <=> query_embedding), 1.0::float8, 1.0::float8 "
        "FROM embeddings e WHERE e.model = model_filter "
        "AND e.search_vector @@ websearch_to_tsquery('english', query_text) "
        "AND 1 - (e.embedding <=> query_embedding) >= match_threshold LIMIT match_count $$"
    )  # the classic bug: an inner join of the two sides
    outcome = quality.hybrid_search_combines_both(indexed)
    assert not outcome.passed


@SHARES_EMBEDDER
def test_embeddings_are_fresh_fails_on_missing_stale_and_orphaned_rows(db, embedder):
    source = _passages(db)
    _sync(db, source, embedder)
    assert quality.embeddings_are_fresh(db, [source], embedder.model).passed
    db.execute("UPDATE passages SET body = 'new text' WHERE id = 1")
    db.execute("INSERT INTO passages VALUES (9, 'New', 'A new passage')")
    db.execute("DELETE FROM passages WHERE id = 2")
    outcome = quality.embeddings_are_fresh(db, [source], embedder.model)
    assert not outcome.passed
    assert (outcome.metadata["missing"], outcome.metadata["stale"],
            outcome.metadata["orphaned"]) == (1, 1, 1)  # fmt: skip


def test_filtered_search_through_the_ann_index_still_returns_count_rows(indexed):
    # 30 of 600 rows belong to another source: a filter that the HNSW scan alone (ef_search 80)
    # would mostly miss; the iterative scan keeps going until match_count rows are found
    indexed.execute("UPDATE embeddings SET source_table = 'rare' WHERE id % 20 = 0")
    plan = quality.explain_search(indexed, "gen", 16, prefer_index=True)
    assert index_name("gen") in plan
    q = indexed.execute("SELECT embedding FROM embeddings WHERE source_table = 'gen' LIMIT 1")
    vec = q.fetchone()[0]
    with indexed.transaction():
        indexed.execute("SET LOCAL enable_seqscan = off")  # the ANN path, even on a small table
        rows = indexed.execute(
            "SELECT source_table FROM similarity_search(%s::vector, -1, 10, 'rare', 'gen')",
            (vec,),
        ).fetchall()
    assert rows == [("rare",)] * 10
