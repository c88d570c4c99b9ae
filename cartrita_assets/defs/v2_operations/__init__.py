"""v2's day two: scheduled, verified backups of the serving database and Redis."""
