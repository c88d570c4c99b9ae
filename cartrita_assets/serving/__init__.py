"""Serving v2 after the cutover: a PgBouncer connection pooler and a streaming read replica."""
