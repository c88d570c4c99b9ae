-- description: Enable pgvector and the keyword-search helpers
-- depends: 0001
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
