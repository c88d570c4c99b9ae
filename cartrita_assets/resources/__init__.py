"""Dagster resources shared by every phase: the v1 source, the lock, reports, the embedder."""
