"""cartrita-assets: Cartrita's v1 -> v2 data migration as a Dagster asset graph."""
