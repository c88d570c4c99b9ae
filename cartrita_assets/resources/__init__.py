"""Dagster resources: the v1 source, the v2 target and the backup store."""
