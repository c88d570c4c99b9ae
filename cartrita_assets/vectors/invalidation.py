"""The application's Redis keys derived from a source row, and forgetting them when the row's
embedding changes.

The rule: each embedding source (``embeddings.source_table``) names key patterns holding
``{id}``, the row's id as text (``embeddings.source_id``). When ``embeddings_index`` replaces or
deletes a row's embedding, the keys its patterns give for that id are unlinked, in every Redis
database in use, and nothing else:

- a pattern without glob characters is one key per id: ``UNLINK`` of exactly those keys;
- a pattern with glob characters (``*``, ``?``, ``[...]``) is found by ``SCAN MATCH`` (one pass per
  pattern and database, with ``{id}`` as ``*``), and a key is unlinked only when the part of it
  that stands for ``{id}`` is one of the changed ids;
- the id is matched literally (its own ``*`` or ``[`` are not wildcards), and ``{id}`` must sit
  between literal characters (or at an end), so id ``1`` never matches the keys of id ``12``.

A row embedded for the first time has had no embedding anything was derived from: only replaced
and deleted embeddings invalidate (so the first forward run leaves the caches v1 handed over).

``CARTRITA_CACHE_KEY_PATTERNS`` sets the rule: ``source=pattern[,pattern...][;source=...]``, e.g.
``conversations=cache:conversation:{id};knowledge_entries=cache:knowledge:{id},search:kb:{id}:*``;
``none`` turns invalidation off. The default is Cartrita's own ``cache:conversation:{id}``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis

from cartrita_assets.errors import CartritaError

ID = "{id}"
GLOB = "*?["
DEFAULT_PATTERNS = "conversations=cache:conversation:{id}"
BATCH = 500


class CacheRuleError(CartritaError):
    """``CARTRITA_CACHE_KEY_PATTERNS`` is not a valid rule."""


@dataclass(frozen=True)
class KeyPattern:
    """One key pattern of a source: the text around its single ``{id}``."""

    prefix: str
    suffix: str

    @property
    def exact(self) -> bool:
        """True when the pattern names one key per id (no glob characters)."""
        return not any(ch in self.prefix + self.suffix for ch in GLOB)

    def key(self, source_id: str) -> str:
        """The key of ``source_id`` (exact patterns only)."""
        return f"{self.prefix}{source_id}{self.suffix}"

    def family(self) -> str:
        """The SCAN MATCH glob of every id's keys."""
        return f"{self.prefix}*{self.suffix}"

    def ids_in(self, key: str) -> set[str]:
        """Every id this pattern could have produced ``key`` from (glob patterns): each split of
        the key into a part the prefix matches, a non-empty id and a part the suffix matches."""
        head, tail = _regex(self.prefix), _regex(self.suffix)
        starts = [i for i in range(len(key) + 1) if head.fullmatch(key, 0, i)]
        return {
            key[start:end]
            for start in starts
            for end in range(start + 1, len(key) + 1)
            if tail.fullmatch(key, end)
        }

    def __str__(self) -> str:
        return f"{self.prefix}{ID}{self.suffix}"


def _glob_to_regex(glob: str) -> str:
    out, i = [], 0
    while i < len(glob):
        ch = glob[i]
        if ch == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
            continue
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[" and "]" in glob[i + 1 :]:
            end = glob.index("]", i + 1)
            body = glob[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("^") else body) + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=256)
def _regex(glob: str) -> re.Pattern[str]:
    return re.compile(_glob_to_regex(glob), re.S)


def parse_rule(text: str) -> dict[str, tuple[KeyPattern, ...]]:
    """``source=pattern[,pattern...][;source=...]`` as patterns per source.

    Raises:
        CacheRuleError: naming the part that is wrong and how to write it.
    """
    if text.strip().lower() == "none":
        return {}
    rule: dict[str, tuple[KeyPattern, ...]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        source, sep, patterns = part.partition("=")
        if not sep or not source.strip() or not patterns.strip():
            raise CacheRuleError(
                f"CARTRITA_CACHE_KEY_PATTERNS: {part!r} is not source=pattern (e.g. "
                f"{DEFAULT_PATTERNS!r}); separate sources with ';' and patterns with ','."
            )
        rule[source.strip()] = tuple(_pattern(p.strip()) for p in patterns.split(",") if p.strip())
    return rule


def _pattern(text: str) -> KeyPattern:
    if text.count(ID) != 1:
        raise CacheRuleError(
            f"CARTRITA_CACHE_KEY_PATTERNS: pattern {text!r} must hold {ID} exactly once (the "
            "source row's id); without it every matching key would go."
        )
    prefix, suffix = text.split(ID)
    if (prefix and prefix[-1] in "*?]") or (suffix and suffix[0] in GLOB):
        raise CacheRuleError(
            f"CARTRITA_CACHE_KEY_PATTERNS: in {text!r} a wildcard touches {ID}, so id 1 would "
            f"also match the keys of id 12: put a literal separator (e.g. ':') beside {ID}."
        )
    return KeyPattern(prefix, suffix)


def describe(rule: dict[str, tuple[KeyPattern, ...]]) -> str:
    """The rule as the setting writes it (for the metadata)."""
    return "; ".join(f"{s}={','.join(map(str, ps))}" for s, ps in rule.items()) or "none"


@dataclass
class Invalidation:
    """What one invalidation did."""

    unlinked: dict[str, int] = field(default_factory=dict)  # source -> keys removed
    scanned: int = 0  # keys SCAN returned for glob patterns
    rows: dict[str, int] = field(default_factory=dict)  # source -> changed rows with a rule

    @property
    def total(self) -> int:
        """Keys removed in all."""
        return sum(self.unlinked.values())


def invalidate(
    connect_db: Callable[[int], redis.Redis],
    dbs: Iterable[int],
    rule: dict[str, tuple[KeyPattern, ...]],
    changed: dict[str, set[str]],
) -> Invalidation:
    """Unlink the keys ``rule`` derives from the ``changed`` ids of each source, in every db.

    Args:
        connect_db: a client for one logical database.
        dbs: the databases to look in (those holding keys).
        rule: patterns per source (:func:`parse_rule`).
        changed: source -> ids whose embedding was replaced or deleted.
    """
    out = Invalidation()
    for source, ids in sorted(changed.items()):
        patterns = rule.get(source, ())
        if not ids or not patterns:
            continue
        out.rows[source] = len(ids)
        for db in dbs:
            client = connect_db(db)
            for pattern in patterns:
                keys = (
                    _exact_keys(pattern, ids) if pattern.exact else _scan(client, pattern, ids, out)
                )
                out.unlinked[source] = out.unlinked.get(source, 0) + _unlink(client, keys)
    return out


def _exact_keys(pattern: KeyPattern, ids: set[str]) -> list[str]:
    return [pattern.key(i) for i in sorted(ids)]


def _scan(client: redis.Redis, pattern: KeyPattern, ids: set[str], out: Invalidation) -> list[str]:
    found = []
    for raw in client.scan_iter(match=pattern.family(), count=1000):
        key = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else str(raw)
        out.scanned += 1
        if pattern.ids_in(key) & ids:
            found.append(key)
    return found


def _unlink(client: redis.Redis, keys: list[str]) -> int:
    removed = 0
    for i in range(0, len(keys), BATCH):
        batch = [k.encode("utf-8", "surrogateescape") for k in keys[i : i + BATCH]]
        removed += int(client.unlink(*batch))
    return removed
