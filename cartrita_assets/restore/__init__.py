"""The restore phase: a verified backup into v2 through a staging database (steps.py)."""
