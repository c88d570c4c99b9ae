"""The integration suite run against v2, the report it writes, and when the health checks run."""
