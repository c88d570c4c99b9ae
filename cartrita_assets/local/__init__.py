"""Project-managed PostgreSQL (+pgvector) and Redis servers for the embedded default."""
