"""Deterministic synthetic Cartrita v1 data set: the demo v1 database and Redis.

The same ``(scale, seed)`` always produces byte-identical rows and keys. Every table gets its
own ``random.Random`` and ``numpy`` generator, keyed by SHA-256 of ``"<seed>:<stream>"``, so a
table's content does not depend on how much the other tables consumed. Rows scale linearly with
``scale``; one ~3 MB knowledge entry is present at every scale.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import numpy as np
import psycopg
import redis
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.types.json import Jsonb

DIM = 1536
DIM_LARGE = 3072
BASE_TS = datetime(2025, 1, 1, tzinfo=UTC)
BIG_TEXT_CHARS = 3_000_000
VECTOR_BATCH = 256
PROGRESS_EVERY = 10_000
# pg_database_size after seed_postgres on PostgreSQL 18.6 + pgvector 0.8.6, seed 42:
# 13,091,343 bytes at scale 1 and 957,628,943 at scale 300 (an empty database is ~7.5 MB).
BYTES_PER_SCALE = 3_158_988
BASE_BYTES = 9_932_355

# Rows each scale unit adds, per table (knowledge_entries also gets the one big entry).
ROWS_PER_SCALE: dict[str, int] = {
    "users": 20,
    "conversations": 150,
    "conversation_messages": 200,
    "chat_sessions": 40,
    "chat_messages": 250,
    "knowledge_entries": 60,
    "journal_entries": 50,
    "tool_embeddings": 30,
    "audit_log": 300,
    "user_settings": 80,
}

# One per class the migration must carry intact: accented Latin, combining marks, CJK, Hangul,
# Arabic/Hebrew (RTL), Cyrillic, Greek, emoji (ZWJ, skin tone, flag), astral (4-byte) chars,
# invisible characters and COPY-hostile text (tab, newline, CR, backslash, quotes).
UNICODE_SNIPPETS: tuple[str, ...] = (
    "café crème, naïve façade, São Paulo, Łódź",
    "e\u0301tude with combining acute, n\u0303 and Z\u0364\u0351\u0300",
    "日本語のテキストを検索する",
    "中文知识库条目",
    "한국어 문장 예시",
    "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם, מה שלומך?",
    "Привет, мир",
    "Καλημέρα κόσμε",
    "launch 🚀 done ✅",
    "pair programming \U0001f469\u200d\U0001f4bb with 👍🏽",
    "flag 🇪🇸 and 🇯🇵",
    "astral 𝄞 clef and 𠜎 (CJK ext B)",
    "mixed RTL \u200fעברית\u200e and LTR",
    "zero\u200bwidth and BOM\ufeffinside",
    "tab\there, back\\slash, 'single' \"double\"",
    "line one\nline two\r\nline three",
    "Ångström, Søren, Zoë, Ñandú, Nguyễn Văn",
)

WORDS: tuple[str, ...] = tuple(
    """the a your my this that next every each assistant agent model prompt response token
    context window memory embedding vector similarity cosine distance search keyword ranking
    score index query database table column row schema migration backup restore snapshot
    cluster node pod deployment service volume secret kubernetes postgres redis python
    function variable error exception trace latency performance cache session queue worker
    calendar meeting reminder deadline project task email draft reply summary translation
    weather forecast temperature travel flight hotel restaurant recipe ingredient garlic
    tomato olive budget invoice payment receipt journal mood gratitude sleep exercise
    meditation focus habit goal music playlist photo camera garden plant morning evening
    weekend family friend birthday gift book chapter note idea plan step first then finally
    quickly carefully important simple secure private encrypted password account settings
    profile notification update version release feature bug fix test result data training
    inference should could would will can is are was were has have had need want try use
    build check compare explain schedule summarise translate review organise deploy migrate
    analyse estimate book cancel remember about with without before after during because
    and or but so for from into over under between""".split()
)
TOPICS: tuple[str, ...] = (
    "calendar", "email inbox", "weekly budget", "trip to Kyoto", "sourdough recipe",
    "Python script", "Kubernetes cluster", "Postgres database", "vector search", "backup plan",
    "marathon training", "Spanish lesson", "team meeting", "invoice", "journal", "playlist",
)  # fmt: skip
VERBS: tuple[str, ...] = (
    "schedule", "summarise", "translate", "debug", "plan", "optimise", "explain", "compare",
    "draft", "review", "organise", "deploy", "migrate", "back up", "restore", "estimate",
)  # fmt: skip
QUESTIONS: tuple[str, ...] = (
    "Can you {verb} my {topic} for tomorrow?",
    "How do I {verb} the {topic} without losing data?",
    "What's the best way to {verb} a {topic}?",
    "Please {verb} this {topic} and keep it short.",
    "Why does my {topic} fail when I try to {verb} it?",
)
ANSWERS: tuple[str, ...] = (
    "Sure! Here's how to {verb} your {topic}.",
    "Good question. To {verb} the {topic}, start small.",
    "I can help {verb} that {topic}. A few notes first.",
    "Done — I went ahead and tried to {verb} the {topic}.",
)
MODELS: tuple[str, ...] = ("gpt-4o", "gpt-4o-mini", "gpt-4-turbo", "claude-3-5-sonnet", "o1-mini")
NAMES: tuple[tuple[str, str], ...] = (
    ("Ana García", "ana.garcia"), ("José Álvarez", "jose.alvarez"), ("田中 太郎", "tanaka.taro"),
    ("محمد علي", "mohammed.ali"), ("דוד כהן", "david.cohen"), ("Björn Ångström", "bjorn.a"),
    ("Nguyễn Văn An", "nguyen.an"), ("Олег Петров", "oleg.petrov"), ("김민준", "minjun.kim"),
    ("Chloé O'Brien", "chloe.obrien"), ("Ελένη Παπαδοπούλου", "eleni.p"), ("Priya Patel", "priya"),
    ("Łukasz Żółć", "lukasz.z"), ("Ren\u0065\u0301e Dubois", "renee.d"), ("Ñandú 𝄞", "nandu"),
    ("\U0001f469\u200d\U0001f4bb Dev", "dev"), ("Zoë Smith", "zoe.smith"), ("王小明", "wang.xm"),
)  # fmt: skip
TAGS: tuple[str, ...] = (
    "python", "ai", "postgres", "recipe", "travel", "health", "finance", "work", "日本語",
    "café", "🚀launch", "עברית", "العربية", "to-do", "ideas", "long tag with spaces",
)  # fmt: skip
CATEGORIES: tuple[str, ...] = ("note", "howto", "reference", "personal", "work", "recipe")
MOODS: tuple[str, ...] = ("happy", "calm", "anxious", "tired", "grateful", "😊 great", "😔 low")
TOOLS: tuple[str, ...] = (
    "web_search", "calendar_create_event", "calendar_list_events", "gmail_search",
    "gmail_send", "weather_lookup", "code_interpreter", "image_generate", "translate_text",
    "knowledge_search", "journal_write", "reminder_set", "traducir_texto_🌐", "天気予報",
)  # fmt: skip
EVENTS: tuple[str, ...] = (
    "user.login", "user.logout", "user.password_reset", "conversation.create",
    "knowledge.update", "tool.invoke", "admin.role_change", "export.requested",
)  # fmt: skip

Row = tuple[Any, ...]
Parents = Mapping[str, Sequence[Any]]
Log = Callable[[str], None]


def _stream_key(seed: int, stream: str) -> int:
    """A 64-bit seed for one named stream, stable across processes (no ``hash()``)."""
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """``n`` random-normal float32 vectors of ``dim`` dimensions, L2-normalised (norm in f64)."""
    x = rng.standard_normal((n, dim), dtype=np.float32).astype(np.float64)
    x /= np.sqrt((x * x).sum(axis=1, keepdims=True))
    return x.astype(np.float32)


def vector_text(vec: np.ndarray) -> str:
    """A vector as v1 stored it in text columns: ``[0.01234568,-0.0456,...]`` (8 decimals)."""
    return json.dumps(np.round(vec.astype(np.float64), 8).tolist(), separators=(",", ":"))


class _Vectors:
    """An endless stream of unit vectors, drawn in fixed-size batches (deterministic)."""

    def __init__(self, seed: int, stream: str, dim: int) -> None:
        self._rng = np.random.default_rng(_stream_key(seed, f"{stream}:v{dim}"))
        self._dim = dim
        self._buf = np.empty((0, dim), dtype=np.float32)
        self._pos = 0

    def next(self) -> np.ndarray:
        if self._pos == len(self._buf):
            self._buf, self._pos = unit_vectors(self._rng, VECTOR_BATCH, self._dim), 0
        self._pos += 1
        return self._buf[self._pos - 1]


class _Gen:
    """Scalar generators for one table: words, sentences, timestamps, uuids, vectors."""

    def __init__(self, seed: int, stream: str) -> None:
        self.seed, self.stream = seed, stream
        self.rng = random.Random(_stream_key(seed, stream))
        self._snippet = self.rng.randrange(len(UNICODE_SNIPPETS))
        self._vectors: dict[int, _Vectors] = {}

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, options: Sequence[Any]) -> Any:
        return options[self.rng.randrange(len(options))]

    def snippet(self) -> str:
        """The next unicode snippet, cycling so every class shows up in every table."""
        self._snippet = (self._snippet + 1) % len(UNICODE_SNIPPETS)
        return UNICODE_SNIPPETS[self._snippet]

    def sentence(self) -> str:
        words = self.rng.choices(WORDS, k=self.rng.randint(6, 16))
        text = " ".join(words)
        return text[0].upper() + text[1:] + self.pick(".....?!")

    def paragraph(self, lo: int = 2, hi: int = 6, unicode_p: float = 0.4) -> str:
        parts = [self.sentence() for _ in range(self.rng.randint(lo, hi))]
        if self.chance(unicode_p):
            parts.insert(self.rng.randrange(len(parts) + 1), self.snippet())
        return " ".join(parts)

    def template(self, templates: Sequence[str]) -> str:
        return self.pick(templates).format(verb=self.pick(VERBS), topic=self.pick(TOPICS))

    def ts(self, days: int = 365) -> datetime:
        secs, micros = self.rng.randrange(days * 86_400), self.rng.randrange(1_000_000)
        return BASE_TS + timedelta(seconds=secs, microseconds=micros)

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def vector(self, dim: int = DIM) -> np.ndarray:
        if dim not in self._vectors:
            self._vectors[dim] = _Vectors(self.seed, self.stream, dim)
        return self._vectors[dim].next()


def _json_doc(g: _Gen) -> Any:
    """A jsonb value: nested objects, arrays with nulls, unicode, big ints; sometimes odd shapes."""
    roll = g.rng.random()
    if roll < 0.05:
        return None  # SQL NULL
    if roll < 0.08:
        return [g.pick(TAGS), None, g.rng.randint(-5, 5), [], {}]  # top-level array
    doc: dict[str, Any] = {
        "source": g.pick(("web", "mobile", "api", "voice")),
        "tokens": g.rng.randint(1, 8000),
        "scores": [round(g.rng.uniform(-1, 1), 6), None, g.rng.randint(0, 100)],
        "tags": g.rng.sample(TAGS, g.rng.randint(0, 3)),
        "nested": {"lang": g.pick(("en", "es", "ja", "ar", "he")), "note": g.snippet()},
    }
    if g.chance(0.3):
        doc["deep"] = {"a": {"b": {"c": {"d": [1, {"e": "ünïcödé 🚀"}]}}}, "empty": {}}
    if g.chance(0.1):
        doc["big_int"] = 9_007_199_254_740_993  # 2**53 + 1: not exact as a JS number
    return doc


def _user_rows(g: _Gen, n: int, parents: Parents) -> Iterator[Row]:
    alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    for i in range(n):
        name, local = NAMES[i % len(NAMES)]
        email = f"{local}{i}@{g.pick(('example.com', 'example.org', 'ejemplo.es'))}"
        pw = "$2b$12$" + "".join(g.rng.choices(alphabet, k=53)) if g.chance(0.85) else None
        role = g.pick(("user",) * 6 + ("admin", "moderator", "disabled", None))
        is_admin = None if g.chance(0.1) else role == "admin"
        yield (email, None if g.chance(0.1) else name, pw, role, is_admin, g.ts())


def _conversation_rows(g: _Gen, n: int, parents: Parents) -> Iterator[Row]:
    users = parents["users"]
    for i in range(n):
        speaker = g.pick(("system", None)) if g.chance(0.04) else ("user", "assistant")[i % 2]
        if speaker == "assistant":
            text, model = g.template(ANSWERS) + " " + g.paragraph(), g.pick(MODELS)
        else:
            text, model = g.template(QUESTIONS), None
        if g.chance(0.15):
            text += " " + g.snippet()
        yield (g.pick(users), speaker, text, model, g.ts())


def _conversation_message_rows(g: _Gen, n: int, parents: Parents) -> Iterator[Row]:
    conversations = parents["conversations"]
    for _ in range(n):
        content = g.paragraph(1, 5) if g.chance(0.97) else None
        vec = g.vector() if g.chance(0.75) else None
        yield (g.pick(conversations), content, _json_doc(g), vec)


def _chat_session_rows(g: _Gen, n: int, parents: Parents) -> Iterator[Row]:
    users = parents["users"]
    for _ in range(n):
        title = None if g.chance(0.15) else g.template(QUESTIONS)[:80]
        yield (g.uuid4(), g.pick(users), title, g.ts())


def _chat_message_rows(g: _Gen, n: int, parents: Parents) -> Iterator[Row]:
    sessions = parents["chat_sessions"]
    for i in range(n):
        role = "system" if g.chance(0.05) else ("user", "assistant")[i % 2]
        if role == "assistant":
            content = g.template(ANSWERS) + "\n\n" + g.paragraph(2, 8)
            tokens, model = g.rng.randint(5, 4000), g.pick(MODELS)
        else:
            content, tokens, model = g.template(QUESTIONS), None, None
        yield (g.pick(sessions), role, content, tokens, model, g.ts())


def _tags(g: _Gen) -> list[str | None] | None:
    roll = g.rng.random()
    if roll < 0.1:
        return None
    if roll < 0.25:
        return []
    tags: list[str | None] = g.rng.sample(TAGS, g.rng.randint(1, 4))
    if g.chance(0.15):
        tags.insert(g.rng.randrange(len(tags) + 1), None)
    return tags


def big_text(seed: int) -> str:
    """The ~3 MB knowledge entry body (a long 'export'); same at every scale for one seed."""
    g = _Gen(seed, "knowledge_entries:big")
    parts: list[str] = []
    total = 0
    while total < BIG_TEXT_CHARS:
        if len(parts) % 50 == 0:
            parts.append(f"## Chapter {len(parts) // 50 + 1}: {g.template(QUESTIONS)}")
        parts.append(g.paragraph(3, 8, unicode_p=0.2))
        total += len(parts[-1]) + 2
    return "\n\n".join(parts)


def _knowledge_row(g: _Gen, user_id: int, title: str, content: str) -> Row:
    vec = g.vector() if g.chance(0.95) else None
    large = g.vector(DIM_LARGE) if g.chance(0.2) else None
    score = None if g.chance(0.1) else round(g.rng.random(), 4)
    created = g.ts()
    updated = created + timedelta(hours=g.rng.randint(0, 2000)) if g.chance(0.7) else None
    category = None if g.chance(0.15) else g.pick(CATEGORIES)
    return (user_id, title, content, vec, large, _tags(g), category, score, created, updated)


def _knowledge_rows(g: _Gen, n: int, parents: Parents) -> Iterator[Row]:
    users = parents["users"]
    yield _knowledge_row(g, users[0], "Full conversation export (multi-megabyte)", big_text(g.seed))
    for i in range(n):
        title = g.template(QUESTIONS)
        if i == 0:  # a title at the varchar(500) limit, multi-byte characters included
            title = (title + " " + "日本語テキスト 🚀 𝄞 " * 40)[:500]
        content = "\n\n".join(g.paragraph() for _ in range(g.rng.randint(1, 4)))
        yield _knowledge_row(g, g.pick(users), title, content)


def _journal_rows(g: _Gen, n: int, parents: Parents) -> Iterator[Row]:
    users = parents["users"]
    for _ in range(n):
        mood = None if g.chance(0.2) else g.pick(MOODS)
        content = f"Today I felt {mood or 'unsure'}. " + g.paragraph(2, 7, unicode_p=0.5)
        vec = vector_text(g.vector()) if g.chance(0.8) else None
        yield (g.uuid4(), g.pick(users), content, mood, vec)


def _tool_rows(g: _Gen, n: int, parents: Parents) -> Iterator[Row]:
    for i in range(n):
        base = TOOLS[i % len(TOOLS)]
        name = base if i < len(TOOLS) else f"{base}_v{i // len(TOOLS) + 1}"
        description = f"Use {name} to {g.pick(VERBS)} the user's {g.pick(TOPICS)}. "
        yield (name, description + g.sentence(), vector_text(g.vector()))


def _audit_rows(g: _Gen, n: int, parents: Parents) -> Iterator[Row]:
    for _ in range(n):
        payload = _json_doc(g)
        if g.chance(0.02):
            payload = Jsonb(None)  # jsonb 'null', distinct from SQL NULL
        yield (g.pick(EVENTS), payload, g.ts())


def _settings_rows(g: _Gen, n: int, parents: Parents) -> Iterator[Row]:
    users = parents["users"]
    keys = ("theme", "language", "voice", "timezone", "notifications", "signature", None)
    prev: Row = (None, None, None)
    for i in range(n):
        if i % 40 == 39:
            yield prev  # exact duplicate row: legal without a primary key
            continue
        user_id = None if g.chance(0.05) else g.pick(users)
        value = None if g.chance(0.15) else g.pick(("dark", "es-ES", "nova", "UTC", g.snippet()))
        prev = (user_id, g.pick(keys), value)
        yield prev


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: Callable[[_Gen, int, Parents], Iterator[Row]]
    key: str | None = None  # column whose values later tables reference


_TABLES: tuple[_Table, ...] = (
    _Table(
        "users",
        ("email", "name", "password_hash", "role", "is_admin", "created_at"),
        ("text", "text", "text", "text", "bool", "timestamptz"),
        _user_rows,
        "id",
    ),
    _Table(
        "conversations",
        ("user_id", "speaker", "text", "model", "created_at"),
        ("int4", "text", "text", "text", "timestamptz"),
        _conversation_rows,
        "id",
    ),
    _Table(
        "conversation_messages",
        ("conversation_id", "content", "metadata", "embeddings"),
        ("int4", "text", "jsonb", "vector"),
        _conversation_message_rows,
    ),
    _Table(
        "chat_sessions",
        ("session_id", "user_id", "title", "created_at"),
        ("uuid", "int4", "text", "timestamptz"),
        _chat_session_rows,
        "session_id",
    ),
    _Table(
        "chat_messages",
        ("session_id", "role", "content", "tokens_used", "model_used", "created_at"),
        ("uuid", "text", "text", "int4", "text", "timestamptz"),
        _chat_message_rows,
    ),
    _Table(
        "knowledge_entries",
        ("user_id", "title", "content", "embedding", "embedding_large", "tags", "category")
        + ("importance_score", "created_at", "updated_at"),
        ("int4", "text", "text", "vector", "vector", "text[]", "text")
        + ("float4", "timestamptz", "timestamptz"),
        _knowledge_rows,
    ),
    _Table(
        "journal_entries",
        ("id", "user_id", "content", "mood", "embedding"),
        ("uuid", "int4", "text", "text", "text"),
        _journal_rows,
    ),
    _Table(
        "tool_embeddings",
        ("tool_name", "description", "embedding"),
        ("text", "text", "text"),
        _tool_rows,
    ),
    _Table("audit_log", ("event", "payload", "at"), ("text", "jsonb", "timestamptz"), _audit_rows),
    _Table("user_settings", ("user_id", "key", "value"), ("int4", "text", "text"), _settings_rows),
)
TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in _TABLES)


def table_rows(name: str, scale: int, seed: int, parents: Parents) -> Iterator[Row]:
    """The rows (in COPY column order) of table ``name``; ``parents`` maps referenced tables
    (``users``, ``conversations``, ``chat_sessions``) to their ids. Pure: no database needed."""
    table = next(t for t in _TABLES if t.name == name)
    return table.rows(_Gen(seed, name), ROWS_PER_SCALE[name] * scale, parents)


def _copy_table(conn: psycopg.Connection, table: _Table, rows: Iterable[Row], log: Log) -> int:
    stmt = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, table.columns))
    )
    count = 0
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.set_types(list(table.types))
        for row in rows:
            copy.write_row(row)
            count += 1
            if count % PROGRESS_EVERY == 0:
                log(f"{table.name}: {count} rows")
    return count


def _fetch_keys(conn: psycopg.Connection, table: _Table) -> list[Any]:
    assert table.key is not None
    stmt = sql.SQL("SELECT {k} FROM {t} ORDER BY {k}").format(
        k=sql.Identifier(table.key), t=sql.Identifier(table.name)
    )
    return [r[0] for r in conn.execute(stmt)]


def _set_sequences(conn: psycopg.Connection, scale: int, seed: int) -> None:
    rng = random.Random(_stream_key(seed, "sequences"))
    invoice = 1000 + 7 * (40 * scale + rng.randrange(10))
    ticket = 500 * scale + rng.randrange(500)
    conn.execute("SELECT setval('invoice_number_seq', %s, true)", [invoice])
    conn.execute("SELECT setval('support_ticket_seq', %s, false)", [ticket])


def _load_tables(conn: psycopg.Connection, scale: int, seed: int, log: Log) -> dict[str, int]:
    parents: dict[str, list[Any]] = {}
    counts: dict[str, int] = {}
    for table in _TABLES:
        started = time.monotonic()
        rows = table_rows(table.name, scale, seed, parents)
        counts[table.name] = _copy_table(conn, table, rows, log)
        if table.key is not None:
            parents[table.name] = _fetch_keys(conn, table)
        log(f"{table.name}: {counts[table.name]} rows in {time.monotonic() - started:.1f}s")
    return counts


def seed_postgres(
    conn: psycopg.Connection, scale: int = 1, seed: int = 42, log: Log | None = None
) -> dict[str, int]:
    """Create the v1 schema in the (empty) database ``conn`` is connected to and load it;
    returns rows per table. Commits, then runs ``ANALYZE``."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    say: Log = log or (lambda _line: None)
    schema = resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
    with conn.transaction():
        conn.execute(schema)
        register_vector(conn)
        counts = _load_tables(conn, scale, seed, say)
        _set_sequences(conn, scale, seed)
    conn.execute("ANALYZE")
    if not conn.autocommit:
        conn.commit()
    say(f"loaded {sum(counts.values())} rows (scale={scale}, seed={seed})")
    return counts


def approx_bytes_per_scale() -> int:
    """On-disk bytes (``pg_database_size``) one scale unit adds, measured on PostgreSQL 18 +
    pgvector 0.8; the fixed part (schema, 3 MB entry) is about ``BASE_BYTES``."""
    return BYTES_PER_SCALE


@dataclass(frozen=True)
class RedisKey:
    """One Redis key to create: ``kind`` is string/hash/list/set/zset; ``ttl_ms`` or None."""

    db: int
    key: str
    kind: str
    value: Any
    ttl_ms: int | None = None


def _ttl(g: _Gen, p: float) -> int | None:
    """With probability ``p``, a TTL between 1 hour and 7 days, in milliseconds."""
    return g.rng.randint(3_600_000, 7 * 86_400_000) if g.chance(p) else None


def _session_key(g: _Gen, i: int) -> RedisKey:
    name, local = NAMES[i % len(NAMES)]
    fields = {
        "user_id": str(i + 1),
        "email": f"{local}{i}@example.com",
        "name": name,
        "created_at": g.ts().isoformat(),
        "ip": f"203.0.113.{g.rng.randint(1, 254)}",
        "user_agent": g.pick(("Mozilla/5.0 (X11; Linux x86_64)", "CartritaMobile/1.4 (iOS 17)")),
        "locale": g.pick(("en-US", "es-ES", "ja-JP", "ar-EG", "he-IL")),
        "csrf": "",
    }
    return RedisKey(0, f"session:{g.uuid4()}", "hash", fields, _ttl(g, 0.5))


def _db0_scaled(g: _Gen, scale: int) -> Iterator[RedisKey]:
    for i in range(15 * scale):
        yield _session_key(g, i)
    for i in range(15 * scale):
        doc = json.dumps({"reply": g.paragraph(1, 2), "model": g.pick(MODELS)}, ensure_ascii=False)
        yield RedisKey(0, f"cache:conversation:{i + 1}", "string", doc, _ttl(g, 0.3))
    for i in range(3 * scale):
        jobs = [json.dumps({"job": j, "text": g.sentence()}) for j in range(g.rng.randint(1, 8))]
        yield RedisKey(0, f"queue:{g.pick(('embeddings', 'email', 'tools'))}:{i}", "list", jobs)
    for i in range(5 * scale):
        yield RedisKey(0, f"user:{i + 1}:tags", "set", g.rng.sample(TAGS, g.rng.randint(1, 5)))
    for i in range(2 * scale):
        scores = {f"user:{u}": round(g.rng.uniform(-50, 500), 3) for u in range(1, 11)}
        yield RedisKey(0, f"leaderboard:weekly:{i + 1}", "zset", scores, _ttl(g, 0.5))


def _db0_fixed(g: _Gen, scale: int) -> Iterator[RedisKey]:
    online = [str(u) for u in sorted(g.rng.sample(range(1, 20 * scale + 1), 10 * scale))]
    yield RedisKey(0, "online_users", "set", online)
    board = {f"user:{u}": round(g.rng.uniform(-100, 1000), 2) for u in range(1, 20 * scale + 1)}
    board.update({"user:neg": -12.75, "user:zero": 0.0, "user:tiny": 0.001, "用户:🚀": 3.5})
    yield RedisKey(0, "leaderboard", "zset", board)
    yield RedisKey(0, "blob:avatar:thumb", "string", b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x80\xc3(")
    yield RedisKey(0, "empty:string", "string", "")
    yield RedisKey(0, "counter:messages", "string", str(1000 * scale + g.rng.randrange(1000)))
    yield RedisKey(0, "usuario:josé:preferencias", "hash", {"tema": "oscuro", "idioma": "es"})
    yield RedisKey(0, "用户:设置", "string", "语言=中文", _ttl(g, 1.0))
    yield RedisKey(0, "🚀:launch:flags", "set", ["beta", "rtl", "ünïcode"])
    yield RedisKey(0, "מפתח:עברית", "list", ["א", "ב", "ג", "𝄞"])


def _db1_keys(g: _Gen, scale: int) -> Iterator[RedisKey]:
    for i in range(10 * scale):
        ip = f"198.51.100.{i % 254 + 1}:{i // 254}"
        yield RedisKey(1, f"ratelimit:{ip}", "string", str(g.rng.randint(1, 120)), _ttl(g, 0.8))
    for i in range(10 * scale):
        job = {"name": "embed", "data": json.dumps({"text": g.snippet()}), "attemptsMade": "0"}
        yield RedisKey(1, f"bull:embeddings:{i + 1}", "hash", job)
    yield RedisKey(1, "bull:embeddings:wait", "list", [str(i + 1) for i in range(10 * scale)])
    done = {str(i + 1): 1735689600000.0 + i * 1000.5 for i in range(5 * scale)}
    yield RedisKey(1, "bull:embeddings:completed", "zset", done)
    yield RedisKey(1, "feature:flags", "hash", {"voice": "on", "rtl": "on", "ñ": "sí"})


def redis_keys(scale: int = 1, seed: int = 42) -> list[RedisKey]:
    """Every key ``seed_redis`` writes, in write order (pure: no server needed)."""
    g = _Gen(seed, "redis")
    return [*_db0_scaled(g, scale), *_db0_fixed(g, scale), *_db1_keys(g, scale)]


def _client_for_db(client: redis.Redis, db: int) -> redis.Redis:
    """A client on the same server as ``client`` but database ``db`` (own pool)."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "db": db}
    return redis.Redis(connection_pool=redis.ConnectionPool(pool.connection_class, **kwargs))


def _write_keys(client: redis.Redis, keys: Iterable[RedisKey]) -> int:
    pipe = client.pipeline(transaction=False)
    writers: dict[str, Callable[[RedisKey], Any]] = {
        "string": lambda k: pipe.set(k.key, k.value),
        "hash": lambda k: pipe.hset(k.key, mapping=k.value),
        "list": lambda k: pipe.rpush(k.key, *k.value),
        "set": lambda k: pipe.sadd(k.key, *k.value),
        "zset": lambda k: pipe.zadd(k.key, k.value),
    }
    count = 0
    for k in keys:
        writers[k.kind](k)
        if k.ttl_ms is not None:
            pipe.pexpire(k.key, k.ttl_ms)
        count += 1
    pipe.execute()
    return count


def seed_redis(client: redis.Redis, scale: int = 1, seed: int = 42) -> dict[int, int]:
    """Load keys into databases 0 and 1 of the Redis ``client`` points at (``client`` is used
    for db 0; db 1 gets its own connection). Target databases should be empty; returns keys
    written per db."""
    keys = redis_keys(scale, seed)
    counts = {0: _write_keys(client, (k for k in keys if k.db == 0))}
    other = _client_for_db(client, 1)
    try:
        counts[1] = _write_keys(other, (k for k in keys if k.db == 1))
    finally:
        other.connection_pool.disconnect()
    return counts
