"""Retrieval presets (migration 0011) on real PostgreSQL + pgvector: chosen by name, each one
ranks as the configuration it names, usage is counted per preset and shown in
vector_search_stats."""

from __future__ import annotations

import psycopg
import pytest
from test_search_functions import _load

from cartrita_assets.vectors.indexing import ensure_indexes

pytestmark = pytest.mark.integration

PRESET = "SELECT source_id FROM public.hybrid_search(%s, %s::vector, preset => %s)"


def _ids(db, query: str, *args) -> list[str]:
    return [r[0] for r in db.execute(query, args).fetchall()]


@pytest.fixture
def loaded(db):
    """300 rows of model ``gen``; the query is row 5's vector with a word only row 17 holds."""
    vectors = _load(db, 300)
    ensure_indexes(db, lambda _m: None)
    return db, vectors[5], "word17"


def test_presets_select_different_rankings_by_name(loaded):
    db, q, text = loaded
    semantic = _ids(db, PRESET, text, q, "semantic")
    keyword = _ids(db, PRESET, text, q, "keyword")
    assert semantic[0] == "5" and keyword[0] == "17" and semantic != keyword
    # each preset ranks exactly as the configuration it names
    plain = "SELECT source_id FROM public.similarity_search(%s::vector, -1, 10)"
    assert semantic == _ids(db, plain, q)
    guide = "SELECT source_id FROM public.hybrid_search(%s, %s::vector, 0.7, 0.3, -1, 10)"
    assert _ids(db, PRESET, text, q, "balanced") == _ids(db, guide, text, q)
    rrf = "SELECT source_id FROM public.hybrid_search_rrf(%s, %s::vector, 10, 60)"
    by_name = "SELECT source_id FROM public.hybrid_search_rrf(%s, %s::vector, preset => %s)"
    assert _ids(db, PRESET, text, q, "rrf") == _ids(db, rrf, text, q)
    assert _ids(db, by_name, text, q, "rrf") == _ids(db, rrf, text, q)
    # a preset of one's own: candidate pool, match count and a score threshold
    db.execute(
        "INSERT INTO search_presets (name, fusion, vector_weight, keyword_weight, candidate_pool, "
        "min_score, match_count) VALUES ('strict', 'weighted', 1, 1, 5, 0.5, 3)"
    )
    strict = db.execute(
        "SELECT source_id, combined_score FROM public.hybrid_search(%s, %s::vector, "
        "preset => 'strict')",
        (text, q),
    ).fetchall()
    assert 1 <= len(strict) <= 3 and all(score >= 0.5 for _, score in strict)


def test_usage_is_counted_per_preset_and_shown_in_vector_search_stats(loaded):
    db, q, text = loaded
    for preset, times in (("balanced", 3), ("keyword", 1), ("rrf", 2)):
        for _ in range(times):
            _ids(db, PRESET, text, q, preset)
    _ids(db, "SELECT source_id FROM public.hybrid_search(%s, %s::vector, 0.7, 0.3)", text, q)
    usage = dict(db.execute("SELECT preset, searches FROM search_preset_usage WHERE model = 'gen'"))
    assert usage == {"balanced": 3, "keyword": 1, "rrf": 2}  # the plain call is no preset's
    shown = db.execute("SELECT preset_searches FROM vector_search_stats WHERE model = 'gen'")
    rows = [r[0] for r in shown.fetchall()]  # one row per source of the model
    assert rows and all(r == {"balanced": 3, "keyword": 1, "rrf": 2} for r in rows)
    # a read-only transaction (or a standby) searches without counting
    with db.transaction():
        db.execute("SET TRANSACTION READ ONLY")
        assert _ids(db, PRESET, text, q, "keyword")[0] == "17"
    assert db.execute(
        "SELECT searches FROM search_preset_usage WHERE preset = 'keyword'"
    ).fetchone() == (1,)


def test_bad_preset_names_are_one_clear_error(loaded):
    db, q, text = loaded
    with pytest.raises(psycopg.errors.InvalidParameterValue) as unknown:
        _ids(db, PRESET, text, q, "fast")
    assert "unknown search preset 'fast'; known presets: balanced, keyword, rrf, semantic" in str(
        unknown.value
    )
    by_name = "SELECT source_id FROM public.hybrid_search_rrf(%s, %s::vector, preset => %s)"
    with pytest.raises(psycopg.errors.InvalidParameterValue) as weighted:
        _ids(db, by_name, text, q, "balanced")
    assert "fuses by weighted, not by rank" in str(weighted.value)
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO search_presets (name, fusion) VALUES ('Bad Name', 'weighted')")
    assert db.execute("SELECT count(*) FROM search_preset_usage").fetchone() == (0,)
