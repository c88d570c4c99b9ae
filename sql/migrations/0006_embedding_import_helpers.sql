-- description: Parse text-encoded vectors safely; cap the keyword index input per row
-- depends: 0005

-- v1 stored some vectors as text ('[0.1,0.2,...]'). NULL for anything that is not a vector, so
-- one malformed row is reported and skipped instead of failing the whole import.
CREATE OR REPLACE FUNCTION public.parse_vector_or_null(p_text text)
RETURNS vector
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
BEGIN
    IF p_text IS NULL OR btrim(p_text) = '' THEN
        RETURN NULL;
    END IF;
    RETURN p_text::vector;
EXCEPTION WHEN data_exception OR invalid_text_representation OR program_limit_exceeded THEN
    RETURN NULL;
END
$fn$;

-- A tsvector holds at most 1 MB: the keyword side indexes the first 262144 characters of each
-- row (the whole text is still stored, hashed and embedded). Without the cap one very long
-- text would make its insert fail.
ALTER TABLE public.embeddings DROP COLUMN IF EXISTS search_vector;
ALTER TABLE public.embeddings ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (to_tsvector('english', left(content, 262144))) STORED;
CREATE INDEX IF NOT EXISTS embeddings_search_vector_idx ON public.embeddings USING gin (search_vector);
