"""Deterministic synthetic Cartrita v1 data set (PostgreSQL schema + rows, Redis keys)."""
