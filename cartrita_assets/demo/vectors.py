"""Embedding vectors: dimensions, random unit vectors, and v1's text form of a vector."""

from __future__ import annotations

import json

import numpy as np

DIM = 1536
DIM_LARGE = 3072


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """``n`` random-normal float32 vectors of ``dim`` dimensions, L2-normalised (norm in f64)."""
    x = rng.standard_normal((n, dim), dtype=np.float32).astype(np.float64)
    x /= np.sqrt((x * x).sum(axis=1, keepdims=True))
    return x.astype(np.float32)


def vector_text(vec: np.ndarray) -> str:
    """A vector as v1 stored it in text columns: ``[0.01234568,-0.0456,...]`` (8 decimals)."""
    return json.dumps(np.round(vec.astype(np.float64), 8).tolist(), separators=(",", ":"))
