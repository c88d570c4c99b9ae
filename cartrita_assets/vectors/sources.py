"""Which rows of which tables become embeddings: the source list and its defaults.

A source is one table: its id column (integer, uuid or text: stored as text), the columns whose
text is embedded (joined with a blank line, NULL and empty parts skipped), and optionally a
vector column that v1 already filled (native ``vector`` or the text form ``[0.1,0.2,...]``)
with the model that produced it. Existing vectors are imported as they are, never re-embedded.

Without a configured list, :func:`discover_sources` returns the Cartrita v1 tables present in
the database (``DEFAULT_SOURCES``), with only the columns that exist.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import psycopg
from psycopg import sql

from cartrita_assets.errors import CartritaError


class SourceError(CartritaError):
    """A configured embedding source names a table or column that does not exist."""


@dataclass(frozen=True)
class VectorColumn:
    """A column of existing vectors and the model that produced them."""

    column: str
    model: str


@dataclass(frozen=True)
class Source:
    """One table whose rows are embedded.

    Args:
        table: the table name (unquoted, any case or characters).
        id_column: its unique key column; the value is stored as text.
        text_columns: columns joined (blank line between, NULL/empty skipped) into the text.
        vectors: existing vector columns to import, each with its model.
        schema: the table's schema.
        embed: embed the text with the configured embedder as well.
    """

    table: str
    id_column: str
    text_columns: tuple[str, ...]
    vectors: tuple[VectorColumn, ...] = ()
    schema: str = "public"
    embed: bool = True

    @property
    def name(self) -> str:
        """The ``source_table`` value stored in ``embeddings`` (schema-qualified outside public)."""
        return self.table if self.schema == "public" else f"{self.schema}.{self.table}"

    def relation(self) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(self.table))

    def text_expression(self, alias: str = "s") -> sql.Composed:
        """``concat_ws`` of the text columns, each trimmed, NULL and empty parts skipped."""
        parts = [
            sql.SQL("NULLIF(btrim({}.{}::text), '')").format(
                sql.Identifier(alias), sql.Identifier(c)
            )
            for c in self.text_columns
        ]
        return sql.SQL("concat_ws(E'\\n\\n', {})").format(sql.SQL(", ").join(parts))

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, object]) -> Source:
        vectors = tuple(VectorColumn(**v) for v in data.get("vectors") or ())  # type: ignore[union-attr,arg-type]
        return Source(
            table=str(data["table"]),
            id_column=str(data["id_column"]),
            text_columns=tuple(str(c) for c in data["text_columns"]),  # type: ignore[union-attr]
            vectors=vectors,
            schema=str(data.get("schema") or "public"),
            embed=bool(data.get("embed", True)),
        )


@dataclass(frozen=True)
class _Default:
    table: str
    id_column: str
    text_columns: tuple[str, ...]
    vectors: tuple[VectorColumn, ...] = field(default_factory=tuple)


# Cartrita v1's tables with text worth searching. v1 filled its vectors with OpenAI models:
# 1536 dims = text-embedding-3-small (the guide's default model), 3072 = text-embedding-3-large.
V1_SMALL = "text-embedding-3-small"
V1_LARGE = "text-embedding-3-large"
DEFAULT_SOURCES: tuple[_Default, ...] = (
    _Default(
        "knowledge_entries",
        "id",
        ("title", "content"),
        (VectorColumn("embedding", V1_SMALL), VectorColumn("embedding_large", V1_LARGE)),
    ),
    _Default("conversation_messages", "id", ("content",), (VectorColumn("embeddings", V1_SMALL),)),
    _Default("chat_messages", "id", ("content",)),
    _Default("conversations", "id", ("text",)),
    _Default("journal_entries", "id", ("content",), (VectorColumn("embedding", V1_SMALL),)),
    _Default(
        "tool_embeddings",
        "id",
        ("tool_name", "description"),
        (VectorColumn("embedding", V1_SMALL),),
    ),
)


def _columns(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str] | None:
    """Column name -> type name of a table or view, or None when it does not exist."""
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
        (schema, table),
    ).fetchall()
    return {name: typ for name, typ in rows} if rows else None


def discover_sources(conn: psycopg.Connection) -> list[Source]:
    """The default sources whose tables exist here, keeping only the columns that exist."""
    found: list[Source] = []
    for d in DEFAULT_SOURCES:
        cols = _columns(conn, "public", d.table)
        if cols is None or d.id_column not in cols:
            continue
        text = tuple(c for c in d.text_columns if c in cols)
        if not text:
            continue
        vectors = tuple(v for v in d.vectors if v.column in cols)
        found.append(Source(d.table, d.id_column, text, vectors))
    return found


def validate_sources(
    conn: psycopg.Connection, sources: list[Source], check_unique: bool = True
) -> None:
    """Every configured table and column exists; the id column is unique; names are distinct.

    Raises:
        SourceError: naming the source and what is missing, before anything is written.
    """
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SourceError(f"Embedding sources list a table twice: {', '.join(dupes)}.")
    for s in sources:
        cols = _columns(conn, s.schema, s.table)
        if cols is None:
            raise SourceError(
                f"Embedding source {s.name!r}: no table {s.schema}.{s.table} in this database. "
                "Fix the table name in the sources config, or remove the source."
            )
        wanted = [s.id_column, *s.text_columns, *(v.column for v in s.vectors)]
        missing = [c for c in wanted if c not in cols]
        if missing:
            raise SourceError(
                f"Embedding source {s.name!r}: column(s) {', '.join(map(repr, missing))} not in "
                f"{s.schema}.{s.table} (it has {', '.join(sorted(cols))}). Fix the sources config."
            )
        if not s.text_columns:
            raise SourceError(f"Embedding source {s.name!r}: text_columns is empty.")
        for v in s.vectors:
            typ = cols[v.column]
            if not typ.startswith(("vector", "halfvec", "text", "character varying")):
                raise SourceError(
                    f"Embedding source {s.name!r}: column {v.column!r} is {typ}, not a vector or "
                    "text column; import vectors only from vector or text columns."
                )
        if check_unique:  # a full scan: skipped when only a few changed ids are synced
            _check_unique(conn, s)


def _check_unique(conn: psycopg.Connection, s: Source) -> None:
    dup = conn.execute(
        sql.SQL(
            "SELECT {id}::text FROM {rel} GROUP BY 1 "
            "HAVING count(*) > 1 OR {id}::text IS NULL LIMIT 1"
        ).format(id=sql.Identifier(s.id_column), rel=s.relation())
    ).fetchone()
    if dup is not None:
        raise SourceError(
            f"Embedding source {s.name!r}: id column {s.id_column!r} is not a unique, non-null key "
            "(a repeated or NULL value exists). Pick the table's primary key as id_column."
        )


def sources_json(sources: list[Source]) -> str:
    """The list as stored in the materialization metadata (read back by the checks)."""
    return json.dumps([s.to_dict() for s in sources], sort_keys=True)


def sources_from_json(text: str) -> list[Source]:
    return [Source.from_dict(d) for d in json.loads(text)]
