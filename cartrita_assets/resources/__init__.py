"""Dagster resources shared by every phase: the v1 source, backup store, lock, reports, embedder."""
