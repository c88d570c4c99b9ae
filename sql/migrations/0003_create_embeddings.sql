-- description: Create the unified embeddings table (many sources, models and dimensions)
-- depends: 0002
-- Source ids are text because v1 mixes integer and uuid keys. The vector column has no fixed
-- dimension so 384, 1536 and 3072-dim models live side by side; ANN indexes are per model
-- (partial expression indexes built by rebuild_vector_indexes()).
CREATE TABLE IF NOT EXISTS public.embeddings (
    id            bigserial PRIMARY KEY,
    source_table  text        NOT NULL,
    source_id     text        NOT NULL,
    model         text        NOT NULL,
    dimensions    integer     NOT NULL CHECK (dimensions BETWEEN 1 AND 16000),
    content       text        NOT NULL,
    content_hash  char(64)    NOT NULL,
    embedding     vector      NOT NULL,
    metadata      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    search_vector tsvector    GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT embeddings_source_model_key UNIQUE (source_table, source_id, model),
    CONSTRAINT embeddings_dimensions_match CHECK (vector_dims(embedding) = dimensions)
);
CREATE INDEX IF NOT EXISTS embeddings_search_vector_idx ON public.embeddings USING gin (search_vector);
CREATE INDEX IF NOT EXISTS embeddings_model_idx ON public.embeddings (model, dimensions);
-- One row per model: its dimension and the ANN index last built for it (see rebuild_vector_indexes).
CREATE TABLE IF NOT EXISTS public.embedding_models (
    model          text PRIMARY KEY,
    dimensions     integer     NOT NULL,
    index_kind     text        NOT NULL DEFAULT 'exact' CHECK (index_kind IN ('exact', 'hnsw', 'ivfflat')),
    index_name     text,
    index_params   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    rows_at_build  bigint      NOT NULL DEFAULT 0,
    built_at       timestamptz,
    reason         text
);

COMMENT ON TABLE public.embeddings IS
    'One row per (source table, source id, model); content_hash = sha256(model || text)';

DO $grant$
BEGIN
    IF coalesce(current_setting('cartrita.app_role', true), '') <> '' THEN
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.embeddings TO %I',
                       current_setting('cartrita.app_role'));
        EXECUTE format('GRANT USAGE ON SEQUENCE public.embeddings_id_seq TO %I',
                       current_setting('cartrita.app_role'));
        EXECUTE format('GRANT SELECT, INSERT ON public.embedding_models TO %I',
                       current_setting('cartrita.app_role'));
    END IF;
END
$grant$;
