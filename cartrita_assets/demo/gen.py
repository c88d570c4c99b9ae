"""Per-stream deterministic generators: one ``random.Random`` and one ``numpy`` generator per
named stream, seeded by SHA-256 of ``"<seed>:<stream>"`` (stable across processes)."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from cartrita_assets.demo.vectors import DIM, unit_vectors
from cartrita_assets.demo.vocab import TOPICS, UNICODE_SNIPPETS, VERBS, WORDS

BASE_TS = datetime(2025, 1, 1, tzinfo=UTC)
VECTOR_BATCH = 256


def _stream_key(seed: int, stream: str) -> int:
    """A 64-bit seed for one named stream, stable across processes (no ``hash()``)."""
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


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
