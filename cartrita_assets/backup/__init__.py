"""The backup phase: a consistent snapshot of v1 (snapshot.py) and its manifest (manifest.py)."""
