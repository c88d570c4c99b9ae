"""embeddings_index: the unified embeddings table kept in line with its sources, and its checks."""
