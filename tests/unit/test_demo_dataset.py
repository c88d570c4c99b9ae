"""Pure parts of the synthetic Cartrita v1 data set: no PostgreSQL or Redis needed."""

from __future__ import annotations

import json
import unicodedata
import uuid
from importlib import resources
from typing import Any

import numpy as np
import pytest

from cartrita_assets.demo import dataset as ds


def _parents(scale: int = 1) -> dict[str, list[Any]]:
    return {
        "users": list(range(1, 20 * scale + 1)),
        "conversations": list(range(1, 150 * scale + 1)),
        "chat_sessions": [uuid.UUID(int=i, version=4) for i in range(40 * scale)],
    }


def _canon(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Rows with numpy vectors made comparable (arrays -> bytes, Jsonb -> its object)."""
    out: list[Any] = []
    for value in row:
        if isinstance(value, np.ndarray):
            value = (value.dtype.str, value.tobytes())
        elif type(value).__name__ == "Jsonb":
            value = ("jsonb", value.obj)
        out.append(value)
    return tuple(out)


def _rows(name: str, scale: int = 1, seed: int = 42) -> list[tuple[Any, ...]]:
    return [_canon(r) for r in ds.table_rows(name, scale, seed, _parents(scale))]


def _all_text(seed: int = 42) -> str:
    texts = []
    for name in ds.TABLE_NAMES:
        for row in ds.table_rows(name, 1, seed, _parents()):
            texts.extend(v for v in row if isinstance(v, str) and len(v) < 100_000)
    return "\n".join(texts)


@pytest.mark.parametrize("name", ds.TABLE_NAMES)
def test_rows_are_deterministic_and_seed_dependent(name):
    first = _rows(name)
    assert first == _rows(name)
    assert first != _rows(name, seed=7)


@pytest.mark.parametrize("name", ds.TABLE_NAMES)
def test_rows_scale_linearly(name):
    extra = 1 if name == "knowledge_entries" else 0  # the one multi-megabyte entry
    for scale in (1, 3):
        rows = _rows(name, scale)
        assert len(rows) == ds.ROWS_PER_SCALE[name] * scale + extra


def test_rows_match_copy_columns():
    for table in ds._TABLES:
        assert len(table.columns) == len(table.types)
        row = next(ds.table_rows(table.name, 1, 42, _parents()))
        assert len(row) == len(table.columns)


def test_text_covers_unicode_classes():
    text = _all_text()
    checks = {
        "accented latin": lambda c: "\u00c0" <= c <= "\u017f",
        "combining mark": lambda c: unicodedata.combining(c) > 0,
        "cjk": lambda c: "\u4e00" <= c <= "\u9fff",
        "hangul": lambda c: "\uac00" <= c <= "\ud7a3",
        "arabic": lambda c: "\u0600" <= c <= "\u06ff",
        "hebrew": lambda c: "\u0590" <= c <= "\u05ff",
        "emoji": lambda c: "\U0001f300" <= c <= "\U0001faff",
        "astral": lambda c: ord(c) > 0xFFFF,
        "rtl mark": lambda c: c == "\u200f",
    }
    for label, check in checks.items():
        assert any(check(c) for c in text), label
    for hostile in ("\t", "\n", "\r\n", "\\", '"', "'"):
        assert hostile in text
    assert "\x00" not in text  # PostgreSQL text cannot hold NUL


def test_text_has_real_words_for_keyword_search():
    text = _all_text().lower()
    for word in ("database", "calendar", "kubernetes", "migration", "embedding"):
        assert word in text


def test_unit_vectors_are_normalised_float32():
    vecs = ds.unit_vectors(np.random.default_rng(1), 50, ds.DIM)
    assert vecs.shape == (50, 1536)
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)


def test_vector_columns_hold_1536_and_3072_dims_with_some_nulls():
    rows = list(ds.table_rows("knowledge_entries", 2, 42, _parents(2)))
    small = [r[3] for r in rows]
    large = [r[4] for r in rows]
    assert all(v.shape == (1536,) for v in small if v is not None)
    assert all(v.shape == (3072,) for v in large if v is not None)
    assert 0.1 < sum(v is not None for v in large) / len(large) < 0.35
    assert any(v is None for v in small)


def test_vector_text_round_trips_as_1536_floats():
    vec = ds.unit_vectors(np.random.default_rng(2), 1, ds.DIM)[0]
    text = ds.vector_text(vec)
    assert text.startswith("[") and text.endswith("]") and " " not in text
    values = np.array(json.loads(text))
    assert values.shape == (1536,)
    np.testing.assert_allclose(values, vec, atol=1e-7)
    journal = [r[4] for r in ds.table_rows("journal_entries", 1, 42, _parents())]
    assert None in journal
    assert all(len(json.loads(v)) == 1536 for v in journal if v is not None)


def test_big_entry_is_multi_megabyte_at_every_scale():
    text = ds.big_text(42)
    assert len(text.encode()) > 3_000_000
    assert text == ds.big_text(42)
    for scale in (1, 2):
        first = next(ds.table_rows("knowledge_entries", scale, 42, _parents(scale)))
        assert first[2] == text


def test_nullable_columns_have_nulls_and_arrays_have_edge_cases():
    users = _rows("users", 3)
    assert any(r[1] is None for r in users) and any(r[2] is None for r in users)
    tags = [r[5] for r in _rows("knowledge_entries", 3)]
    assert None in tags and [] in tags
    assert any(t is not None and None in t for t in tags)
    settings = _rows("user_settings", 2)
    assert any(r[0] is None for r in settings) and any(r[2] is None for r in settings)
    assert len(set(settings)) < len(settings)  # duplicate rows: the table has no key


def test_timestamps_are_utc_2025_and_uuids_version_4():
    for row in _rows("chat_sessions"):
        assert row[0].version == 4
        assert row[3].year == 2025 and row[3].utcoffset().total_seconds() == 0
    emails = [r[0] for r in _rows("users", 5)]
    assert len(set(emails)) == len(emails)


def test_jsonb_values_nest_and_include_arrays_and_nulls():
    docs = [r[2] for r in _rows("conversation_messages")]
    assert None in docs
    assert any(isinstance(d, list) for d in docs)
    assert any(isinstance(d, dict) and "deep" in d for d in docs)


def test_schema_file_declares_every_table():
    schema = resources.files("cartrita_assets.demo").joinpath("schema.sql").read_text()
    for name in ds.TABLE_NAMES:
        assert f"CREATE TABLE {name} (" in schema
    assert "CREATE EXTENSION IF NOT EXISTS vector" in schema
    assert "CREATE VIEW active_users" in schema


def test_redis_keys_are_deterministic_and_varied():
    keys = ds.redis_keys(1, 42)
    assert keys == ds.redis_keys(1, 42)
    assert keys != ds.redis_keys(1, 7)
    assert 50 <= len(keys) <= 100
    assert {k.db for k in keys} == {0, 1}
    assert {k.kind for k in keys} == {"string", "hash", "list", "set", "zset", "stream"}
    assert len({(k.db, k.key) for k in keys}) == len(keys)
    assert any(not k.key.isascii() for k in keys)
    values = [k.value for k in keys if k.kind == "string"]
    assert "" in values
    binary = [v for v in values if isinstance(v, bytes)]
    with pytest.raises(UnicodeDecodeError):
        binary[0].decode()


def test_redis_ttls_are_bounded_and_in_the_minority():
    keys = ds.redis_keys(3, 42)
    ttls = [k.ttl_ms for k in keys if k.ttl_ms is not None]
    assert 0 < len(ttls) < len(keys) / 2
    assert all(3_600_000 <= t <= 7 * 86_400_000 for t in ttls)
    board = next(k.value for k in keys if k.key == "leaderboard")
    assert any(s < 0 for s in board.values()) and any(s != int(s) for s in board.values())


def test_redis_keys_scale_linearly():
    assert len(ds.redis_keys(4)) - len(ds.redis_keys(2)) == 2 * (
        len(ds.redis_keys(2)) - len(ds.redis_keys(1))
    )


def test_approx_bytes_per_scale_is_a_few_megabytes():
    assert 1_000_000 < ds.approx_bytes_per_scale() < 10_000_000
