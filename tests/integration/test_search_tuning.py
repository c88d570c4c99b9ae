"""Search effort tuned to a recall target, a recall gate that gives the same verdict every time,
and degenerate vectors reported as data, on real PostgreSQL + pgvector."""

from __future__ import annotations

import numpy as np
import pytest
from pgvector.psycopg import register_vector

from cartrita_assets.vectors import quality, recall, tuning
from cartrita_assets.vectors.indexing import ensure_indexes, index_name

pytestmark = pytest.mark.integration


def _copy(db, model: str, vectors: np.ndarray, prefix: str = "") -> None:
    register_vector(db)
    dims = vectors.shape[1]
    db.execute(
        "INSERT INTO embedding_models (model, dimensions) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (model, dims),
    )
    with db.cursor() as cur:
        with cur.copy(
            "COPY embeddings (source_table, source_id, model, dimensions, content, content_hash, "
            "embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "text", "text", "int4", "text", "text", "vector"])
            for i, v in enumerate(vectors):
                text = f"row {prefix}{i}"
                copy.write_row(("gen", f"{prefix}{i}", model, dims, text, f"{i:064d}", v))


def _near_duplicates(n: int = 4000, dims: int = 256, seed: int = 0) -> np.ndarray:
    """Random directions in pairs of near-duplicates: no cluster structure for the graph to
    follow, and each query's top 10 is crowded by twins (hard for HNSW at a low effort)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n // 2, dims))
    return (np.repeat(base, 2, axis=0) + 0.05 * rng.normal(size=(n, dims))).astype(np.float32)


@pytest.fixture
def hard(db):
    """4,000 near-duplicate-heavy 256-d rows under an HNSW index, searched at effort 40 by
    default (the database default and this session)."""
    _copy(db, "nd", _near_duplicates())
    ensure_indexes(db, lambda _m: None, exact_below=1000)
    db.execute("SELECT set_config('hnsw.ef_search', '40', false)")
    db.execute("ALTER DATABASE vec SET hnsw.ef_search = 40")
    return db


def test_tuning_raises_the_effort_until_recall_holds_and_the_check_passes(hard):
    log: list[str] = []
    result = tuning.tune_model(hard, "nd", "hnsw", log.append, budget_ms=1000)
    print("\n".join(log))  # the efforts tried, for the test log
    first = result.tried[0]
    assert first.effort == 40 and first.recall < recall.TARGET, log
    assert result.passed and result.effort is not None and result.effort > 40, log
    effort, lower = hard.execute(
        "SELECT search_effort, search_recall_lower FROM embedding_models WHERE model = 'nd'"
    ).fetchone()
    assert effort == result.effort and lower >= recall.TARGET
    # the model now takes the general path, which searches at its effort
    assert "'nd'" not in hard.execute("SELECT prosrc FROM pg_proc WHERE proname = "
                                      "'similarity_search'").fetchone()[0]  # fmt: skip
    check = quality.recall_at_10(hard)
    assert check.passed, check.problems
    assert check.metadata["recall_at_10_lower_bound"] == round(lower, 4)


def test_a_budget_too_small_reports_the_shortfall_instead_of_passing(hard):
    result = tuning.tune_model(hard, "nd", "hnsw", lambda _m: None, budget_ms=0.001)
    assert not result.passed and result.note.startswith("SHORTFALL"), result.note
    check = quality.recall_at_10(hard)
    assert not check.passed and "SHORTFALL" in check.problems[0], check.problems


def test_the_same_data_gives_the_same_recall_and_verdict_twice(hard):
    first, second = quality.recall_at_10(hard), quality.recall_at_10(hard)
    numbers = [[row[:7] for row in o.metadata["models"]] for o in (first, second)]  # no latency
    assert numbers[0] == numbers[1] and first.passed == second.passed
    assert first.metadata["recall_at_10"] == second.metadata["recall_at_10"]


def test_degenerate_vectors_are_counted_and_cause_no_false_failure(db):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(20, 16))
    normal = centres[np.arange(400) % 20] + 0.3 * rng.normal(size=(400, 16))
    zero = np.zeros((5, 16))
    extreme = rng.normal(size=(5, 16)) * 1e20  # pgvector's float sums overflow: cosine NaN
    twins = normal[:10]  # exact duplicates of ten rows
    _copy(db, "gen", np.vstack([normal, zero, extreme, twins]).astype(np.float32))
    ensure_indexes(db, lambda _m: None, exact_below=100)  # HNSW
    counts = quality.degenerate_vectors(db)
    assert not counts.passed  # the warning
    assert {k: counts.metadata[k] for k in ("zero_vectors", "extreme_magnitude",
                                             "undefined_distance", "duplicate_vectors")} == {
        "zero_vectors": 5, "extreme_magnitude": 5, "undefined_distance": 10,
        "duplicate_vectors": 25,  # the ten pairs and the five identical zero vectors
    }  # fmt: skip
    found = quality.similarity_search_finds_itself(db, sample=len(normal) + 20)
    assert found.passed, found.problems
    assert found.metadata["skipped_undefined_distance"] == 10
    assert quality.recall_at_10(db).passed
    stats = db.execute(
        "SELECT zero_vectors, extreme_magnitude, undefined_distance, duplicate_vectors "
        "FROM vector_search_stats WHERE model = 'gen'"
    ).fetchone()
    assert stats == (5, 5, 10, 25)


def test_choose_effort_is_the_first_effort_within_budget_that_holds() -> None:
    def m(effort: int, hits: int, ms: float) -> recall.Measurement:
        return recall.Measurement("m", effort, 300, hits, 3000, ms, ms)

    tried = [m(40, 2850, 1.0), m(80, 2990, 2.0), m(160, 3000, 4.0)]
    assert tuning.choose_effort(tried, None, 0.98, 10.0)[:2] == (80, True)
    assert tuning.choose_effort(tried, m(0, 3000, 1.2), 0.98, 1.5)[:2] == (0, True)
    effort, passed, why = tuning.choose_effort(tried, m(0, 3000, 50.0), 0.98, 1.5)
    assert (effort, passed) == (40, False) and why.startswith("SHORTFALL")
    assert recall.wilson_lower(3000, 3000) > 0.998 and recall.wilson_lower(2950, 3000) < 0.985


def test_a_starved_ivfflat_index_gets_more_probes_through_the_general_path(db):
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(30, 16))
    vectors = centres[np.arange(600) % 30] + 0.3 * rng.normal(size=(600, 16))
    _copy(db, "gen", vectors.astype(np.float32))
    db.execute(
        f"CREATE INDEX {index_name('gen')} ON embeddings USING ivfflat "
        "((embedding::vector(16)) vector_cosine_ops) WITH (lists = 200) WHERE model = 'gen'"
    )  # a list per 3 rows and one probe: most true neighbours sit in other lists
    db.execute("ANALYZE embeddings")
    db.execute("UPDATE embedding_models SET index_kind = 'ivfflat', "
               "index_params = '{\"lists\": 200, \"probes\": 1}' WHERE model = 'gen'")  # fmt: skip
    assert not quality.recall_at_10(db).passed
    result = tuning.tune_model(db, "gen", "ivfflat", lambda _m: None, budget_ms=1000)
    assert result.passed and result.effort is not None and result.effort > 1, result.note
    assert quality.recall_at_10(db).passed
