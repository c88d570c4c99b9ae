"""Follow mode: v2 follows v1 by logical replication (PostgreSQL) and REPLICAOF (Redis) from the
backup's own snapshot until ``cutover_job`` switches the application over in seconds."""
