"""Deterministic synthetic Cartrita v1 data set: the demo v1 database and Redis.

The same ``(scale, seed)`` always produces byte-identical rows and keys. Every table gets its
own ``random.Random`` and ``numpy`` generator, keyed by SHA-256 of ``"<seed>:<stream>"``, so a
table's content does not depend on how much the other tables consumed. Rows scale linearly with
``scale``; one ~3 MB knowledge entry is present at every scale.

Files: ``vocab`` (word lists, unicode snippets), ``vectors`` (dimensions, unit vectors, text
form), ``gen`` (per-stream generators), ``values`` (jsonb documents, tags, the big text),
``rows`` (row generators per table), ``tables`` (table specs, ``table_rows``), ``load``
(``seed_postgres``), ``redis_seed`` (``redis_keys``, ``seed_redis``). This module is the
public entry point.
"""

from cartrita_assets.demo.gen import BASE_TS, VECTOR_BATCH
from cartrita_assets.demo.load import (
    BASE_BYTES,
    BYTES_PER_SCALE,
    PROGRESS_EVERY,
    Log,
    approx_bytes_per_scale,
    seed_postgres,
)
from cartrita_assets.demo.redis_seed import RedisKey, redis_keys, seed_redis
from cartrita_assets.demo.rows import Parents, Row
from cartrita_assets.demo.tables import _TABLES as _TABLES
from cartrita_assets.demo.tables import ROWS_PER_SCALE, TABLE_NAMES, table_rows
from cartrita_assets.demo.values import BIG_TEXT_CHARS, big_text
from cartrita_assets.demo.vectors import DIM, DIM_LARGE, unit_vectors, vector_text
from cartrita_assets.demo.vocab import (
    ANSWERS,
    CATEGORIES,
    EVENTS,
    MODELS,
    MOODS,
    NAMES,
    QUESTIONS,
    TAGS,
    TOOLS,
    TOPICS,
    UNICODE_SNIPPETS,
    VERBS,
    WORDS,
)

__all__ = [
    "ANSWERS",
    "BASE_BYTES",
    "BASE_TS",
    "BIG_TEXT_CHARS",
    "BYTES_PER_SCALE",
    "CATEGORIES",
    "DIM",
    "DIM_LARGE",
    "EVENTS",
    "MODELS",
    "MOODS",
    "NAMES",
    "PROGRESS_EVERY",
    "QUESTIONS",
    "ROWS_PER_SCALE",
    "TABLE_NAMES",
    "TAGS",
    "TOOLS",
    "TOPICS",
    "UNICODE_SNIPPETS",
    "VECTOR_BATCH",
    "VERBS",
    "WORDS",
    "Log",
    "Parents",
    "RedisKey",
    "Row",
    "approx_bytes_per_scale",
    "big_text",
    "redis_keys",
    "seed_postgres",
    "seed_redis",
    "table_rows",
    "unit_vectors",
    "vector_text",
]
