"""Text to vectors: the bundled local model and any OpenAI-compatible embeddings endpoint."""
