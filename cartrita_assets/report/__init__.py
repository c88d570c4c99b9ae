"""The integration suite run against v2 and the report it writes."""
