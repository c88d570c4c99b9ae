"""PostgreSQL helpers: connections, inventories (rows, hashes, sequences) and pg_dump/pg_restore."""
