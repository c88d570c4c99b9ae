"""The rollback phase: v1 back to its verified backup, the application back to v1 (steps.py)."""
