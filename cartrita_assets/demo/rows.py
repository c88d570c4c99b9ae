"""Row generators, one per table: ``(gen, n, parents)`` -> rows in COPY column order."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from psycopg.types.json import Jsonb

from cartrita_assets.demo.gen import _Gen
from cartrita_assets.demo.values import _json_doc, _tags, big_text
from cartrita_assets.demo.vectors import DIM_LARGE, vector_text
from cartrita_assets.demo.vocab import (
    ANSWERS,
    CATEGORIES,
    EVENTS,
    MODELS,
    MOODS,
    NAMES,
    QUESTIONS,
    TOOLS,
    TOPICS,
    VERBS,
)

Row = tuple[Any, ...]
Parents = Mapping[str, Sequence[Any]]


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
