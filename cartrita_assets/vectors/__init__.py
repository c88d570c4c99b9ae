"""Embeddings: sources, change-detecting sync, index choice and the search quality checks."""
