"""The generated search functions (migration 0009) on real PostgreSQL + pgvector: inlined into the
caller's query, one generic plan for a prepared call, the same rows as the general path, and the
general path for everything no branch covers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from psycopg import sql

from cartrita_assets.pg.connect import connect
from cartrita_assets.vectors import quality
from cartrita_assets.vectors.indexing import ensure_indexes, index_name

pytestmark = pytest.mark.integration

SIGNATURES = {
    "similarity_search": "SELECT id, similarity FROM public.similarity_search"
    "(%(q)s::public.vector, %(t)s, %(n)s, %(src)s, %(model)s)",
    "hybrid_search": "SELECT id, combined_score FROM public.hybrid_search"
    "(%(text)s, %(q)s::public.vector, 0.6, 0.4, %(t)s, %(n)s, %(src)s, %(model)s)",
    "hybrid_search_rrf": "SELECT id, rrf_score FROM public.hybrid_search_rrf"
    "(%(text)s, %(q)s::public.vector, %(n)s, 30, %(src)s, %(model)s)",
}


def _vec(values) -> str:
    return "[" + ",".join(f"{float(x):.6f}" for x in values) + "]"


def _load(db, n: int, dims: int = 16, model: str = "gen", seed: int = 0) -> list[str]:
    """``n`` clustered rows of ``model`` in two sources, each with a rare word; their vectors."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(2, n // 20), dims))
    vectors = [_vec(centres[i % len(centres)] + 0.3 * rng.normal(size=dims)) for i in range(n)]
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO embeddings (source_table, source_id, model, dimensions, content, "
            "content_hash, embedding) SELECT %s, %s, %s, %s, %s, embedding_content_hash(%s, %s), "
            "%s::vector",
            [
                ("odd" if i % 2 else "even", str(i), model, dims, f"row word{i} topic{i % 7}",
                 model, f"row word{i} topic{i % 7}", v)
                for i, v in enumerate(vectors)
            ],
        )  # fmt: skip
    db.execute(
        "INSERT INTO embedding_models (model, dimensions) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (model, dims),
    )
    return vectors


# the generated function of a name, not its overload taking a preset name (migration 0011)
GENERATED = "NOT 'preset' = ANY(coalesce(proargnames, '{}'))"


def _body(db, name: str) -> str:
    return db.execute(
        "SELECT prosrc FROM pg_proc WHERE proname = %s AND pronamespace = 'public'::regnamespace"
        f" AND {GENERATED}",
        (name,),
    ).fetchone()[0]


def test_the_functions_are_inlinable_sql_and_plan_through_the_ann_index(db):
    _load(db, 300)
    ensure_indexes(db, lambda _m: None, exact_below=100)
    for name in SIGNATURES:
        lang, volatility, definer, config = db.execute(
            "SELECT l.lanname, p.provolatile, p.prosecdef, p.proconfig FROM pg_proc p "
            "JOIN pg_language l ON l.oid = p.prolang "
            f"WHERE p.proname = %s AND p.pronamespace = 'public'::regnamespace AND {GENERATED}",
            (name,),
        ).fetchone()
        # what PostgreSQL requires to inline a set-returning function into the caller's query
        assert (lang, volatility, definer, config) == ("sql", "s", False, None), name
        assert "'gen'" in _body(db, name)
    q = db.execute("SELECT embedding::text FROM embeddings LIMIT 1").fetchone()[0]
    params = {"q": q, "t": -1, "n": 10, "src": None, "model": None, "text": "word1"}
    with db.transaction():
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            db.execute(f"SET LOCAL {setting} = off")  # the ANN path, even on a small table
        for name, query in SIGNATURES.items():
            plan = "\n".join(r[0] for r in db.execute("EXPLAIN " + query, params).fetchall())
            assert index_name("gen") in plan, (name, plan)
            # inlined, the general path pruned (unnest lists the query text's keyword terms)
            assert "Function Scan on" not in plan.replace("Function Scan on unnest", ""), plan


def test_a_prepared_call_settles_on_one_generic_plan(db):
    vectors = _load(db, 300)
    ensure_indexes(db, lambda _m: None, exact_below=100)
    db.execute("PREPARE s(public.vector) AS SELECT id FROM public.similarity_search($1, -1, 10)")
    db.execute(
        "PREPARE h(text, public.vector) AS "
        "SELECT id FROM public.hybrid_search($1, $2, 0.7, 0.3, -1, 10)"
    )
    db.execute(
        "PREPARE r(text, public.vector) AS SELECT id FROM public.hybrid_search_rrf($1, $2, 10)"
    )
    for i in range(12):  # EXECUTE takes no bind parameters: the values go in as literals
        q, text = sql.Literal(vectors[i]), sql.Literal(f"word{i}")
        assert len(db.execute(sql.SQL("EXECUTE s({})").format(q)).fetchall()) == 10
        db.execute(sql.SQL("EXECUTE h({}, {})").format(text, q)).fetchall()
        db.execute(sql.SQL("EXECUTE r({}, {})").format(text, q)).fetchall()
    plans = dict(db.execute("SELECT name, generic_plans FROM pg_prepared_statements").fetchall())
    # PostgreSQL tries five custom plans, then keeps the generic one if it is not dearer
    assert plans == {"s": 7, "h": 7, "r": 7}, plans


def test_the_generated_and_the_general_path_return_the_same_rows(db):
    vectors = _load(db, 120)
    ensure_indexes(db, lambda _m: None)  # exact scans on both paths: the same rows exactly
    assert "'gen'" in _body(db, "similarity_search")
    cases = [
        {"q": vectors[i], "t": t, "n": n, "src": src, "model": model, "text": text}
        for i, t, n, src, model, text in [  # row i is in source "odd" when i is odd
            (0, -1, 10, None, None, "word3"),
            (1, 0.5, 10, None, "gen", "topic2"),
            (3, 0.9, 5, "odd", None, "topic4 row"),
            (4, -1, 25, "even", "gen", "word8 OR word9"),
            (5, 0.2, 1, None, None, ""),
            (6, -1, 10, None, None, None),
            (7, 0.7, 40, "odd", "gen", '"row word1"'),
        ]
    ]  # fmt: skip
    for name, query in SIGNATURES.items():
        general = query.replace(f"public.{name}(", f"public.{name}_general(")
        for params in cases:
            fast = db.execute(query, params).fetchall()
            slow = db.execute(general, params).fetchall()
            assert [r[0] for r in fast] == [r[0] for r in slow], (name, params)
            assert np.allclose([r[1] for r in fast], [r[1] for r in slow]), (name, params)
            assert fast, (name, params)


def test_the_general_path_serves_what_no_branch_covers(db):
    vectors = _load(db, 60)
    ensure_indexes(db, lambda _m: None)
    # record_metrics: the general path records the search
    rows = db.execute(
        "SELECT id FROM similarity_search(%s::vector, -1, 5, NULL, NULL, true)", (vectors[0],)
    ).fetchall()
    assert len(rows) == 5
    assert db.execute(
        "SELECT search_type, result_count FROM search_performance_metrics"
    ).fetchall() == [("similarity", 5)]
    # a model a writer adds after the last index pass: found through the general path
    db.execute(
        "SELECT * FROM upsert_embedding('notes', '1', 'a new model', %s::vector, 'late-8')",
        (_vec(np.ones(8)),),
    )
    assert "late-8" not in _body(db, "similarity_search")
    found = db.execute(
        "SELECT source_id, model FROM similarity_search(%s::vector, -1, 5)", (_vec(np.ones(8)),)
    ).fetchall()
    assert found == [("1", "late-8")]
    ensure_indexes(db, lambda _m: None)  # the next index pass gives it a branch
    assert "'late-8'" in _body(db, "similarity_search")
    # the general path's errors are the functions' errors
    _load(db, 20, model="gen-b")  # a second 16-dim model: a NULL model_filter is ambiguous
    ensure_indexes(db, lambda _m: None)
    with pytest.raises(Exception, match="several models have 16 dimensions"):
        db.execute("SELECT * FROM similarity_search(%s::vector, -1, 5)", (vectors[0],))
    with pytest.raises(Exception, match="it must have the 8 of model late-8"):
        db.execute("SELECT * FROM hybrid_search('x', %s::vector, 0.7, 0.3, -1, 5, NULL, 'late-8')",
                   (vectors[0],))  # fmt: skip
    with pytest.raises(Exception, match="match_count must be between 1 and 1000"):
        db.execute("SELECT * FROM hybrid_search_rrf('x', %s::vector, 0, 60, NULL, 'gen')",
                   (vectors[0],))  # fmt: skip
    assert len(db.execute(
        "SELECT * FROM similarity_search(%s::vector, -1, 5, NULL, 'gen-b')", (vectors[0],)
    ).fetchall()) == 5  # fmt: skip


def test_an_ivfflat_model_is_searched_through_the_general_path(db):
    vectors = _load(db, 150)
    (d,) = ensure_indexes(db, lambda _m: None, exact_below=10, hnsw_max_bytes=1)
    assert d.kind == "ivfflat"
    assert "'gen'" not in _body(db, "similarity_search")  # it sets ivfflat.probes per model
    assert len(db.execute(
        "SELECT * FROM similarity_search(%s::vector, -1, 10)", (vectors[0],)
    ).fetchall()) == 10  # fmt: skip
    assert index_name("gen") in quality.explain_search(db, "gen", 16, prefer_index=True)
    assert quality.vector_index_is_valid(db).passed


def test_model_names_are_quoted_into_the_generated_sql(db):
    hostile = "m'); DROP TABLE embeddings; --$$ \" \\ ÿ"
    vectors = _load(db, 30, model=hostile)
    ensure_indexes(db, lambda _m: None)
    assert db.execute("SELECT count(*) FROM embeddings").fetchone() == (30,)
    rows = db.execute(
        "SELECT model FROM similarity_search(%s::vector, -1, 3, NULL, %s)", (vectors[0], hostile)
    ).fetchall()
    assert rows == [(hostile,)] * 3
    (quoted,) = db.execute("SELECT quote_literal(%s)", (hostile,)).fetchone()
    assert quoted in _body(db, "similarity_search")


def test_a_callers_search_path_cannot_change_the_search(db):
    vectors = _load(db, 300)
    ensure_indexes(db, lambda _m: None, exact_below=100)
    with db.transaction():
        db.execute("SET LOCAL search_path = ''")  # not even public: every name is qualified
        for name, query in SIGNATURES.items():
            params = {"q": vectors[5], "t": -1, "n": 10, "src": None, "model": None,
                      "text": "word5"}  # fmt: skip
            assert len(db.execute(query, params).fetchall()) == 10, name


def test_the_database_defaults_hnsw_to_80_candidates_and_strict_iterative_scans(db):
    assert db.execute("SHOW hnsw.ef_search").fetchone() == ("80",)
    assert db.execute("SHOW hnsw.iterative_scan").fetchone() == ("strict_order",)


def test_concurrent_index_passes_regenerate_one_after_the_other(db):
    _load(db, 30, model="a")
    _load(db, 30, model="b")
    ensure_indexes(db, lambda _m: None)
    assert "'a'" in _body(db, "similarity_search") and "'b'" in _body(db, "similarity_search")
    errors: list[BaseException] = []
    with connect(db.settings, role="test") as other:  # type: ignore[attr-defined]
        other.autocommit = False
        # each marks its model IVFFlat: both rewrite the functions (the trigger regenerates)
        other.execute("UPDATE embedding_models SET index_kind = 'ivfflat' WHERE model = 'a'")

        def second() -> None:
            try:
                with connect(db.settings, role="test") as third:  # type: ignore[attr-defined]
                    third.execute(
                        "UPDATE embedding_models SET index_kind = 'ivfflat' WHERE model = 'b'"
                    )
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()  # waiting for the first generation's lock
        other.commit()
        thread.join(10)
    assert not errors, errors
    body = _body(db, "similarity_search")
    assert "'a'" not in body and "'b'" not in body  # the second saw the first's change


def test_a_model_above_2000_dimensions_is_searched_as_halfvec(db):
    vectors = _load(db, 40, dims=2001, model="wide")
    (d,) = ensure_indexes(db, lambda _m: None, exact_below=10)
    assert d.kind == "hnsw"
    assert "halfvec(2001)" in _body(db, "similarity_search")
    params = {"q": vectors[3], "t": -1, "n": 5, "src": None, "model": None, "text": "word3"}
    with db.transaction():
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            db.execute(f"SET LOCAL {setting} = off")
        plan = "\n".join(
            r[0] for r in db.execute("EXPLAIN " + SIGNATURES["similarity_search"], params)
        )
        assert index_name("wide") in plan, plan
        for name, query in SIGNATURES.items():
            rows = db.execute(query, params).fetchall()
            assert len(rows) == 5, name
            assert (
                rows[0][0]
                == db.execute(  # the row itself comes first
                    "SELECT id FROM embeddings WHERE source_id = '3'"
                ).fetchone()[0]
            ), name


def test_content_hash_split_in_two_keeps_every_hash_of_migration_0005(db):
    """0012 defines embedding_content_hash through embedding_normalized_content and
    embedding_normalized_hash (so a text feeding several models is normalised once). Hashes
    stored before it must not change: the old formula, written out, gives the same value."""
    texts = ["", "  ", "plain", "  two  spaces\tand a tab\n\nand lines  ", "nbsp\u00a0and\u2003em",
             "trailing\r\n", "é\u3000ü" * 3, "x" * 70000 + " \n " + "y"]  # fmt: skip
    for text in texts:
        old, new, parts = db.execute(
            "SELECT encode(sha256(convert_to(%(m)s || E'\\n' || "
            "regexp_replace(btrim(%(t)s), '\\s+', ' ', 'g'), 'UTF8')), 'hex'), "
            "public.embedding_content_hash(%(m)s, %(t)s), public.embedding_normalized_hash("
            "%(m)s, public.embedding_normalized_content(%(t)s))",
            {"m": "some-model", "t": text},
        ).fetchone()
        assert old == new == parts, repr(text[:40])
