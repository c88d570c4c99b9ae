"""The v1 tables in load order: COPY columns and types, rows per scale unit, and the pure
``table_rows`` entry point."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cartrita_assets.demo.gen import _Gen
from cartrita_assets.demo.rows import (
    Parents,
    Row,
    _audit_rows,
    _chat_message_rows,
    _chat_session_rows,
    _conversation_message_rows,
    _conversation_rows,
    _journal_rows,
    _knowledge_rows,
    _settings_rows,
    _tool_rows,
    _user_rows,
)

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
