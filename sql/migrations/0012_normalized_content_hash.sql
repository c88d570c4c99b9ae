-- description: Content hashes from text normalised once: a source feeding several models pays the whitespace normalisation once per row, not once per model (same hash values)
-- depends: 0011
-- embedding_content_hash(model, text) is sha256 of the model name, a newline and the text with
-- its whitespace runs collapsed. The collapsing (a regular expression over the whole text) is
-- by far its largest cost on long texts: about 0.2 s per pass over a 3 MB document here, while
-- the sha256 of the same text takes 0.02 s. It is split in two so that a caller hashing one text
-- for several models normalises it once and hashes it per model; embedding_content_hash is now
-- defined through the two parts, so every caller keeps one definition and the same values.
CREATE OR REPLACE FUNCTION public.embedding_normalized_content(p_content text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT regexp_replace(btrim(p_content), '\s+', ' ', 'g')
$fn$;

-- p_normalized must come from embedding_normalized_content.
CREATE OR REPLACE FUNCTION public.embedding_normalized_hash(p_model text, p_normalized text)
RETURNS char(64)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT encode(sha256(convert_to(p_model || E'\n' || p_normalized, 'UTF8')), 'hex')
$fn$;

CREATE OR REPLACE FUNCTION public.embedding_content_hash(p_model text, p_content text)
RETURNS char(64)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT public.embedding_normalized_hash(p_model, public.embedding_normalized_content(p_content))
$fn$;
