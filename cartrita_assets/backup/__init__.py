"""The backup phase: a consistent snapshot of v1, its manifest, and the store that keeps them."""
