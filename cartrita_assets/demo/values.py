"""Column values richer than one generator call: jsonb documents, ``text[]`` tags and the
multi-megabyte knowledge entry body."""

from __future__ import annotations

from typing import Any

from cartrita_assets.demo.gen import _Gen
from cartrita_assets.demo.vocab import QUESTIONS, TAGS

BIG_TEXT_CHARS = 3_000_000


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
