"""The backup phase: a consistent snapshot of v1 (and, once v2 serves, of v2), its manifest, and
the stores that keep them."""
