"""A vector cache keyed by (model, sha256 of the text), in one SQLite file.

A forward migration replaces v2's database with v1's, so every run would embed every text
again: minutes with the local model, money with a paid endpoint. The cache makes a re-run (after a
rollback, or a failed check) embed only texts it has never seen. It holds vectors derived from
the application's data, so the file is created 0600 in a 0700 folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from cartrita_assets.embeddings.embedders import Embedder


class CachedEmbedder:
    """Wraps an embedder; texts already embedded by the same model come from the cache."""

    def __init__(self, inner: Embedder, path: Path) -> None:
        self.inner = inner
        self.model = inner.model
        self.dimensions = inner.dimensions
        self.path = path
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, text_sha256 TEXT NOT "
                "NULL, dims INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, "
                "text_sha256))"
            )

    def __repr__(self) -> str:
        return f"CachedEmbedder({self.inner!r}, path={str(self.path)!r})"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60)
        try:
            with db:  # commits, or rolls back on error
                yield db
        finally:
            db.close()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        keys = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest() for t in texts]
        found = self._lookup(keys)
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            # one process at a time embeds into this cache: a run that starts while another
            # embeds the same texts waits and reads them instead of embedding them again
            with self._embedding_turn():
                found |= self._lookup([keys[i] for i in missing])
                missing = [i for i in missing if keys[i] not in found]
                if missing:
                    self._embed_and_store(texts, keys, missing, found)
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        return [found[k] for k in keys]

    def _lookup(self, keys: list[str]) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        with self._lock, self._connect() as db:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for key, dims, blob in db.execute(
                    f"SELECT text_sha256, dims, vector FROM vectors WHERE model = ? "
                    f"AND text_sha256 IN ({marks})",
                    [self.model, *chunk],
                ):
                    if dims == self.dimensions:
                        found[key] = np.frombuffer(blob, dtype=np.float32).tolist()
        return found

    def _embed_and_store(
        self,
        texts: Sequence[str],
        keys: list[str],
        missing: list[int],
        found: dict[str, list[float]],
    ) -> None:
        vectors = self.inner.embed([texts[i] for i in missing])
        rows = []
        for i, vec in zip(missing, vectors, strict=True):
            found[keys[i]] = list(vec)
            blob = np.asarray(vec, dtype=np.float32).tobytes()
            rows.append((self.model, keys[i], len(vec), blob))
        with self._lock, self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", rows)

    @contextlib.contextmanager
    def _embedding_turn(self) -> Iterator[None]:
        """An exclusive lock (``flock``) on ``<cache>.lock``, held while texts are embedded and
        stored: across processes and threads sharing the cache file."""
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock
