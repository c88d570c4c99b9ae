-- description: Search effort tuned per model, BM25 keyword ranking on any term, degenerate vector counts
-- depends: 0009
-- 1. embedding_models records the search effort tuned for each model after its index build
--    (hnsw.ef_search or ivfflat.probes; 0 = an exact scan) with the recall and latency measured
--    at it. A model whose effort the database default serves keeps its inlined branch; a model
--    that needs more is searched through the general path, which sets its effort per call.
-- 2. The keyword side matches any term of the query (an OR of its lexemes, not websearch's AND)
--    and ranks with BM25 (k1 1.2, b 0.75): term document frequencies are kept per model in
--    embedding_terms (refresh_keyword_stats, run by every index pass), a term's frequency in a
--    row is recovered from ts_rank, and length is normalised by the row's distinct lexemes. The
--    candidates are the rows holding the query's rarest terms (up to about 2,000 postings).
-- 3. vector_search_stats counts degenerate vectors per source and model.

-- 1. The tuned effort and what was measured at it.
ALTER TABLE public.embedding_models
    ADD COLUMN IF NOT EXISTS search_effort integer CHECK (search_effort BETWEEN 0 AND 10000),
    ADD COLUMN IF NOT EXISTS search_recall double precision,
    ADD COLUMN IF NOT EXISTS search_recall_lower double precision,
    ADD COLUMN IF NOT EXISTS search_p50_ms double precision,
    ADD COLUMN IF NOT EXISTS search_tuned_at timestamptz,
    ADD COLUMN IF NOT EXISTS search_tuning text,
    ADD COLUMN IF NOT EXISTS keyword_docs bigint,
    ADD COLUMN IF NOT EXISTS keyword_avg_length double precision;
COMMENT ON COLUMN public.embedding_models.search_effort IS
    'hnsw.ef_search (HNSW) or ivfflat.probes (IVFFlat) every search of this model runs at; '
    '0 = an exact scan; NULL = not tuned (the database default)';

-- The effort the database default gives an HNSW search (pgvector's own default is 40).
CREATE OR REPLACE FUNCTION public.database_search_effort()
RETURNS integer
LANGUAGE sql STABLE AS $fn$
SELECT coalesce((SELECT substring(c FROM '^hnsw\.ef_search=(\d+)$')::integer
                   FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) c
                  WHERE s.setdatabase = (SELECT oid FROM pg_catalog.pg_database
                                          WHERE datname = current_database())
                    AND s.setrole = 0 AND c LIKE 'hnsw.ef\_search=%'), 40)
$fn$;

-- 2. Keyword statistics: per model, how many rows hold each lexeme, the rows and their mean length.
CREATE TABLE IF NOT EXISTS public.embedding_terms (
    model   text    NOT NULL,
    lexeme  text    NOT NULL,
    docs    integer NOT NULL,
    PRIMARY KEY (model, lexeme)
);

CREATE OR REPLACE FUNCTION public.refresh_keyword_stats(p_model text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $fn$
DECLARE
    m       record;
    v_terms integer := 0;
    v_n     integer;
BEGIN
    FOR m IN SELECT em.model FROM public.embedding_models em
              WHERE p_model IS NULL OR em.model = p_model ORDER BY em.model
    LOOP
        DELETE FROM public.embedding_terms t WHERE t.model = m.model;
        INSERT INTO public.embedding_terms (model, lexeme, docs)
        SELECT m.model, s.word, s.ndoc
          FROM ts_stat(format('SELECT search_vector FROM public.embeddings WHERE model = %L',
                              m.model)) s;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_terms := v_terms + v_n;
        UPDATE public.embedding_models em
           SET (keyword_docs, keyword_avg_length) =
               (SELECT count(*), avg(length(e.search_vector))
                  FROM public.embeddings e WHERE e.model = m.model)
         WHERE em.model = m.model;
    END LOOP;
    RETURN v_terms;
END
$fn$;

-- The best `pool` rows of a model for the query's terms, by BM25. Inlined into the search
-- functions.
-- - Candidates: the rows holding the query's rarest terms, taken rarest first while fewer than
--   2,000 postings are gathered (always at least the rarest term). A row holding only very
--   common terms would rank low anyway, and scoring every row that holds "patient" or "cell"
--   would cost milliseconds per thousand rows. Every candidate is scored on all query terms.
-- - tf: with all weights 1, ts_rank of a one-term query is sum(1/i^2, i = 1..tf) / (pi^2/6), and
--   1 / ((pi^2/6) * (1 - rank)) - 0.5 gives tf back within 0.05.
-- - A row's tsvector is detoasted once (the OFFSET 0 copy), not once per term.
-- - A model without statistics yet ranks every term alike (the idf of an unseen term).
CREATE OR REPLACE FUNCTION public.keyword_candidates(
    query_text    text,
    p_model       text,
    source_filter text,
    pool          integer)
RETURNS TABLE (id bigint, score double precision)
LANGUAGE sql STABLE ROWS 40 AS $fn$
WITH t AS (
    SELECT format('%L', l.lexeme)::tsquery AS q, coalesce(w.docs, 0) AS df,
           ln(1 + (s.n - coalesce(w.docs, 0) + 0.5) / (coalesce(w.docs, 0) + 0.5)) AS idf, s.avgdl
      FROM unnest(tsvector_to_array(to_tsvector('english',
                  left(coalesce(query_text, ''), 10000)))) l(lexeme)
     CROSS JOIN (SELECT greatest(coalesce(max(m.keyword_docs), 1), 1)::double precision AS n,
                        coalesce(nullif(max(m.keyword_avg_length), 0), 100) AS avgdl
                   FROM public.embedding_models m WHERE m.model = p_model) s
      LEFT JOIN public.embedding_terms w ON w.model = p_model AND w.lexeme = l.lexeme
), r AS (
    SELECT string_agg(x.q::text, ' | ')::tsquery AS q
      FROM (SELECT t.q, sum(t.df) OVER (ORDER BY t.df, t.q::text ROWS UNBOUNDED PRECEDING)
                        - t.df AS before
              FROM t) x
     WHERE x.before < 2000
)
SELECT e.id,
       (SELECT sum(t.idf * x.tf * 2.2 / (x.tf + 1.2 * (0.25 + 0.75 * length(d.sv) / t.avgdl)))
          FROM t CROSS JOIN LATERAL (SELECT 1 / (1.6449340668482264
                                     * (1 - ts_rank('{1,1,1,1}', d.sv, t.q, 0))) - 0.5 AS tf) x
         WHERE d.sv @@ t.q) AS score
  FROM r
  JOIN public.embeddings e ON e.search_vector @@ r.q
 CROSS JOIN LATERAL (SELECT e.search_vector || ''::tsvector AS sv OFFSET 0) d
 WHERE e.model = p_model AND (source_filter IS NULL OR e.source_table = source_filter)
 ORDER BY score DESC, e.id
 LIMIT greatest(pool, 0)
$fn$;

DO $grant$
BEGIN
    IF coalesce(current_setting('cartrita.app_role', true), '') <> '' THEN
        EXECUTE format('GRANT SELECT ON public.embedding_terms TO %I',
                       current_setting('cartrita.app_role'));
    END IF;
END
$grant$;

-- 3. The general path: each model's tuned effort, an exact scan for effort 0, BM25 keywords.
-- The effort a general-path search of p_model runs at: its tuned effort, else the session's,
-- raised to twice the rows asked for (an HNSW search returns at most ef_search rows).
CREATE OR REPLACE FUNCTION public.apply_search_effort(p_model text, p_count integer)
RETURNS boolean  -- true when the model is searched by an exact scan
LANGUAGE plpgsql AS $fn$
DECLARE
    v_kind   text;
    v_effort integer;
    v_probes integer;
BEGIN
    SELECT m.index_kind, m.search_effort, (m.index_params ->> 'probes')::integer
      INTO v_kind, v_effort, v_probes
      FROM public.embedding_models m WHERE m.model = p_model;
    IF v_effort = 0 THEN
        RETURN true;
    ELSIF v_kind = 'hnsw' THEN
        PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true),
                set_config('hnsw.ef_search', greatest(coalesce(v_effort,
                    current_setting('hnsw.ef_search')::integer), least(1000, p_count * 2))::text, true);
    ELSIF v_kind = 'ivfflat' THEN
        PERFORM set_config('ivfflat.iterative_scan', 'relaxed_order', true),
                set_config('ivfflat.probes', coalesce(v_effort, v_probes, 1)::text, true);
    END IF;
    RETURN false;
END
$fn$;

CREATE OR REPLACE FUNCTION public.vector_candidates(
    p_query       vector,
    p_model       text,
    p_count       integer,
    p_source      text DEFAULT NULL)
RETURNS TABLE (id bigint, similarity double precision)
LANGUAGE plpgsql STABLE ROWS 40 AS $fn$
DECLARE
    v_expr  text := public.embedding_index_expression(vector_dims(p_query));
    v_cast  text := CASE WHEN vector_dims(p_query) <= 2000 THEN 'vector' ELSE 'halfvec' END;
    -- "+ 0": an expression no index is built on, so an exact-scan model is scanned exactly
    v_exact text := CASE WHEN public.apply_search_effort(p_model, p_count) THEN ' + 0' ELSE '' END;
BEGIN
    -- relaxed_order may return neighbours slightly out of order: sort the few rows again
    RETURN QUERY EXECUTE format(
        'SELECT c.id, c.similarity FROM (
             SELECT e.id, 1 - (%1$s <=> $1::%2$s(%3$s)) AS similarity
               FROM public.embeddings e
              WHERE e.model = %4$L AND ($2::text IS NULL OR e.source_table = $2)
              ORDER BY (%1$s <=> $1::%2$s(%3$s))%5$s
              LIMIT $3) c
          ORDER BY c.similarity DESC',
        v_expr, v_cast, vector_dims(p_query), p_model, v_exact)
    USING p_query, p_source, p_count;
END
$fn$;

CREATE OR REPLACE FUNCTION public.similarity_search_general(
    query_embedding vector,
    match_threshold double precision DEFAULT 0.78,
    match_count     integer DEFAULT 10,
    source_filter   text DEFAULT NULL,
    model_filter    text DEFAULT NULL,
    record_metrics  boolean DEFAULT false)
RETURNS TABLE (id bigint, source_table text, source_id text, model text, content text,
               metadata jsonb, similarity double precision)
LANGUAGE plpgsql ROWS 10 AS $fn$
DECLARE
    v_started timestamptz := clock_timestamp();
    v_model   text;
    v_rows    integer;
    v_dims    integer;
    v_exact   text;
BEGIN
    PERFORM public.check_search_arguments(match_count, match_threshold);
    v_model := public.resolve_search_model(query_embedding, model_filter);
    IF v_model IS NOT NULL THEN
        v_dims := vector_dims(query_embedding);
        v_exact := CASE WHEN public.apply_search_effort(v_model, match_count) THEN ' + 0' ELSE '' END;
        -- one statement, the model as a literal (so the planner can match the model's partial
        -- index), the rows selected directly: no second function, no join back
        RETURN QUERY EXECUTE format(
            'SELECT c.* FROM (
                 SELECT e.id, e.source_table, e.source_id, e.model, e.content, e.metadata,
                        1 - (%1$s <=> $1::%2$s(%3$s)) AS similarity
                   FROM public.embeddings e
                  WHERE e.model = %4$L AND ($2::text IS NULL OR e.source_table = $2)
                  ORDER BY (%1$s <=> $1::%2$s(%3$s))%5$s
                  LIMIT $3) c
              WHERE c.similarity >= $4
              ORDER BY c.similarity DESC',
            public.embedding_index_expression(v_dims),
            CASE WHEN v_dims <= 2000 THEN 'vector' ELSE 'halfvec' END, v_dims, v_model, v_exact)
        USING query_embedding, source_filter, match_count, match_threshold;
    END IF;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF record_metrics THEN
        PERFORM public.record_search_metric('similarity', v_model, source_filter, v_rows, v_started);
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION public.hybrid_search_general(
    query_text      text,
    query_embedding vector,
    vector_weight   double precision DEFAULT 0.7,
    keyword_weight  double precision DEFAULT 0.3,
    match_threshold double precision DEFAULT 0.5,
    match_count     integer DEFAULT 10,
    source_filter   text DEFAULT NULL,
    model_filter    text DEFAULT NULL,
    record_metrics  boolean DEFAULT false)
RETURNS TABLE (id bigint, source_table text, source_id text, model text, content text,
               metadata jsonb, vector_score double precision, keyword_score double precision,
               combined_score double precision)
LANGUAGE plpgsql ROWS 10 AS $fn$
DECLARE
    v_started timestamptz := clock_timestamp();
    v_model   text;
    v_rows    integer;
BEGIN
    PERFORM public.check_search_arguments(match_count, match_threshold);
    -- NaN compares greater than every number and Infinity is not < 'Infinity': both refused
    IF vector_weight IS NULL OR NOT (vector_weight >= 0 AND vector_weight < 'Infinity') THEN
        RAISE EXCEPTION 'vector_weight must be a finite number >= 0, got %', vector_weight
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF keyword_weight IS NULL OR NOT (keyword_weight >= 0 AND keyword_weight < 'Infinity') THEN
        RAISE EXCEPTION 'keyword_weight must be a finite number >= 0, got %', keyword_weight
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF vector_weight + keyword_weight = 0 THEN
        RAISE EXCEPTION 'vector_weight and keyword_weight must not both be 0'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_model := public.resolve_search_model(query_embedding, model_filter);
    RETURN QUERY
    WITH vec AS (
        SELECT c.id, c.similarity
          FROM public.vector_candidates(query_embedding, v_model, match_count * 4, source_filter) c
         WHERE c.similarity >= match_threshold
    ), kw AS (
        -- BM25 scaled by the best candidate's: the best keyword match scores 1
        SELECT k.id, k.score / max(k.score) OVER () AS rank
          FROM public.keyword_candidates(query_text, v_model, source_filter, match_count * 4) k
    ), pooled AS (
        SELECT coalesce(vec.id, kw.id) AS id, coalesce(vec.similarity, 0) AS vs,
               coalesce(kw.rank, 0) AS ks
          FROM vec FULL JOIN kw ON kw.id = vec.id
    )
    SELECT e.id, e.source_table, e.source_id, e.model, e.content, e.metadata, p.vs, p.ks,
           (vector_weight * p.vs + keyword_weight * p.ks) / (vector_weight + keyword_weight)
      FROM pooled p JOIN public.embeddings e ON e.id = p.id
     ORDER BY 9 DESC, e.id
     LIMIT match_count;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF record_metrics THEN
        PERFORM public.record_search_metric('hybrid', v_model, source_filter, v_rows, v_started);
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION public.hybrid_search_rrf_general(
    query_text      text,
    query_embedding vector,
    match_count     integer DEFAULT 10,
    rrf_k           integer DEFAULT 60,
    source_filter   text DEFAULT NULL,
    model_filter    text DEFAULT NULL,
    record_metrics  boolean DEFAULT false)
RETURNS TABLE (id bigint, source_table text, source_id text, model text, content text,
               metadata jsonb, vector_rank integer, keyword_rank integer, rrf_score double precision)
LANGUAGE plpgsql ROWS 10 AS $fn$
DECLARE
    v_started timestamptz := clock_timestamp();
    v_model   text;
    v_rows    integer;
BEGIN
    PERFORM public.check_search_arguments(match_count, 0);
    IF rrf_k IS NULL OR rrf_k < 1 OR rrf_k > 1000000 THEN
        RAISE EXCEPTION 'rrf_k must be between 1 and 1000000, got %', rrf_k
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_model := public.resolve_search_model(query_embedding, model_filter);
    RETURN QUERY
    WITH vec AS (
        SELECT c.id, row_number() OVER (ORDER BY c.similarity DESC)::integer AS r
          FROM public.vector_candidates(query_embedding, v_model, match_count * 4, source_filter) c
    ), kw AS (
        SELECT k.id, row_number() OVER (ORDER BY k.score DESC, k.id)::integer AS r
          FROM public.keyword_candidates(query_text, v_model, source_filter, match_count * 4) k
    ), pooled AS (
        SELECT coalesce(vec.id, kw.id) AS id, vec.r AS vr, kw.r AS kr
          FROM vec FULL JOIN kw ON kw.id = vec.id
    )
    SELECT e.id, e.source_table, e.source_id, e.model, e.content, e.metadata, p.vr, p.kr,
           (coalesce(1.0 / (rrf_k + p.vr), 0) + coalesce(1.0 / (rrf_k + p.kr), 0))::double precision
      FROM pooled p JOIN public.embeddings e ON e.id = p.id
     ORDER BY 9 DESC, e.id
     LIMIT match_count;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF record_metrics THEN
        PERFORM public.record_search_metric('hybrid_rrf', v_model, source_filter, v_rows, v_started);
    END IF;
END
$fn$;

-- 4. The generator (0009's), with each model's tuned effort and BM25 keywords. A model gets an
-- inlined branch when the database default serves its effort (or it is scanned exactly).
CREATE OR REPLACE FUNCTION public.generate_search_functions()
RETURNS text[]
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $fn$
DECLARE
    m          record;
    v_fn       record;
    v_ext      text;    -- the schema pgvector lives in, quoted
    v_dist     text;    -- the index expression <=> the query, as this model's branch spells it
    v_gate     text;    -- true when the arguments select this model
    v_gates    text[] := '{}';
    v_any      text;    -- true when the arguments select any branch
    v_sim      text[] := '{}';
    v_hyb      text[] := '{}';
    v_rrf      text[] := '{}';
    v_body     text;
    v_changed  text[] := '{}';
    -- argument checks of the general path: when one fails, the general path raises its error
    c_sim  constant text := 'match_count BETWEEN 1 AND 1000 AND match_threshold BETWEEN -1 AND 1 '
                            'AND record_metrics IS NOT TRUE';
    c_hyb  constant text := 'match_count BETWEEN 1 AND 1000 AND match_threshold BETWEEN -1 AND 1 '
                            'AND vector_weight >= 0 AND vector_weight < ''Infinity'' '
                            'AND keyword_weight >= 0 AND keyword_weight < ''Infinity'' '
                            'AND vector_weight + keyword_weight > 0 AND record_metrics IS NOT TRUE';
    c_rrf  constant text := 'match_count BETWEEN 1 AND 1000 AND rrf_k BETWEEN 1 AND 1000000 '
                            'AND record_metrics IS NOT TRUE';
    v_default  integer := public.database_search_effort();
    c_src  constant text := '(source_filter IS NULL OR e.source_table = source_filter)';
    -- match_count as a LIMIT: clamped, because a branch's LIMIT is evaluated (and a constant one
    -- folded) even when the gate below it is false: -1 or 2^31-1 must reach the general path's
    -- error, not fail as "LIMIT must not be negative" or overflow in match_count * 4
    c_count constant text := 'least(greatest(match_count, 0), 1000)';
BEGIN
    -- one generation at a time; the lock is held to the end of the transaction
    PERFORM pg_advisory_xact_lock(1128353108, 9);  -- 'CART', the lock 0009 takes
    SELECT quote_ident(n.nspname) INTO v_ext
      FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
     WHERE x.extname = 'vector';
    FOR m IN
        SELECT em.model, em.dimensions, em.search_effort = 0 AS exact_scan,
               (SELECT count(*) FROM public.embedding_models o
                 WHERE o.dimensions = em.dimensions) AS same_dims
          FROM public.embedding_models em
         WHERE (em.index_kind IN ('exact', 'hnsw') AND coalesce(em.search_effort, 0) <= v_default)
            OR em.search_effort = 0
         ORDER BY em.model
         LIMIT 32
    LOOP
        -- the expression every ANN index is built on (embedding_index_expression), schema-
        -- qualified so a caller's search_path cannot change it; the query is not cast to a
        -- typmod, and halfvec's cast only runs for a query of this model's dimensions, so a
        -- branch that is not selected cannot fail while the caller's query is planned
        v_dist := CASE WHEN m.dimensions <= 2000
            THEN format('e.embedding::%s.vector(%s) OPERATOR(%s.<=>) query_embedding',
                        v_ext, m.dimensions, v_ext)
            ELSE format('e.embedding::%1$s.halfvec(%2$s) OPERATOR(%1$s.<=>) CASE WHEN '
                        '%1$s.vector_dims(query_embedding) = %2$s THEN query_embedding::%1$s.halfvec END',
                        v_ext, m.dimensions) END;
        IF m.exact_scan THEN
            -- an expression no index is built on: the model is scanned exactly
            v_dist := format('(%s) + 0', v_dist);
        END IF;
        v_gate := format('(%s.vector_dims(query_embedding) = %s AND (model_filter = %L%s))',
                         v_ext, m.dimensions, m.model,
                         CASE WHEN m.same_dims = 1 THEN ' OR model_filter IS NULL' ELSE '' END);
        v_gates := v_gates || v_gate;
        v_sim := v_sim || format(
'SELECT c.id, c.source_table, c.source_id, c.model, c.content, c.metadata, 1 - c.distance AS similarity
  FROM (SELECT e.id, e.source_table, e.source_id, e.model, e.content, e.metadata, %1$s AS distance
          FROM public.embeddings e
         WHERE e.model = %2$L AND %3$s
           AND %4$s AND %5$s
         ORDER BY distance
         LIMIT %6$s) c
 WHERE 1 - c.distance >= match_threshold', v_dist, m.model, c_src, c_sim, v_gate, c_count);
        -- hybrid: the nearest match_count * 4 and the best match_count * 4 keyword matches, fully
        -- joined and scored; only the best match_count are read back from the table
        v_hyb := v_hyb || format(
'SELECT e.id, e.source_table, e.source_id, e.model, e.content, e.metadata,
       p.vs AS vector_score, p.ks AS keyword_score, p.score AS combined_score
  FROM (SELECT s.id, s.vs, s.ks,
               (vector_weight * s.vs + keyword_weight * s.ks) / (vector_weight + keyword_weight) AS score
          FROM (SELECT coalesce(v.id, k.id) AS id, coalesce(v.similarity, 0) AS vs, coalesce(k.rank, 0) AS ks
           FROM (SELECT c.id, 1 - c.distance AS similarity
                   FROM (SELECT e.id, %1$s AS distance
                           FROM public.embeddings e
                          WHERE e.model = %2$L AND %3$s
                            AND %4$s AND %5$s
                          ORDER BY distance
                          LIMIT %6$s * 4) c
                  WHERE 1 - c.distance >= match_threshold) v
           FULL JOIN
                (SELECT k.id, k.score / max(k.score) OVER () AS rank
                   FROM public.keyword_candidates(query_text, %2$L, source_filter, %6$s * 4) k
                  WHERE %4$s AND %5$s) k ON k.id = v.id) s
         ORDER BY score DESC, s.id
         LIMIT %6$s) p
  JOIN public.embeddings e ON e.id = p.id', v_dist, m.model, c_src, c_hyb, v_gate, c_count);
        v_rrf := v_rrf || format(
'SELECT e.id, e.source_table, e.source_id, e.model, e.content, e.metadata,
       p.vr AS vector_rank, p.kr AS keyword_rank, p.score AS rrf_score
  FROM (SELECT s.id, s.vr, s.kr,
               (coalesce(1.0 / (rrf_k + s.vr), 0) + coalesce(1.0 / (rrf_k + s.kr), 0))::double precision AS score
          FROM (SELECT coalesce(v.id, k.id) AS id, v.r AS vr, k.r AS kr
           FROM (SELECT c.id, row_number() OVER (ORDER BY c.distance)::integer AS r
                   FROM (SELECT e.id, %1$s AS distance
                           FROM public.embeddings e
                          WHERE e.model = %2$L AND %3$s
                            AND %4$s AND %5$s
                          ORDER BY distance
                          LIMIT %6$s * 4) c) v
           FULL JOIN
                (SELECT k.id, row_number() OVER (ORDER BY k.score DESC, k.id)::integer AS r
                   FROM public.keyword_candidates(query_text, %2$L, source_filter, %6$s * 4) k
                  WHERE %4$s AND %5$s) k ON k.id = v.id) s
         ORDER BY score DESC, s.id
         LIMIT %6$s) p
  JOIN public.embeddings e ON e.id = p.id', v_dist, m.model, c_src, c_rrf, v_gate, c_count);
    END LOOP;

    -- the general path takes every call no branch takes
    v_any := coalesce(nullif(array_to_string(v_gates, ' OR '), ''), 'false');
    v_sim := v_sim || format(
'SELECT g.id, g.source_table, g.source_id, g.model, g.content, g.metadata, g.similarity
  FROM public.similarity_search_general(query_embedding, match_threshold, match_count,
                                        source_filter, model_filter, record_metrics) g
 WHERE NOT coalesce(%s AND (%s), false)', c_sim, v_any);
    v_hyb := v_hyb || format(
'SELECT g.id, g.source_table, g.source_id, g.model, g.content, g.metadata,
       g.vector_score, g.keyword_score, g.combined_score
  FROM public.hybrid_search_general(query_text, query_embedding, vector_weight, keyword_weight,
                                    match_threshold, match_count, source_filter, model_filter,
                                    record_metrics) g
 WHERE NOT coalesce(%s AND (%s), false)', c_hyb, v_any);
    v_rrf := v_rrf || format(
'SELECT g.id, g.source_table, g.source_id, g.model, g.content, g.metadata,
       g.vector_rank, g.keyword_rank, g.rrf_score
  FROM public.hybrid_search_rrf_general(query_text, query_embedding, match_count, rrf_k,
                                        source_filter, model_filter, record_metrics) g
 WHERE NOT coalesce(%s AND (%s), false)', c_rrf, v_any);

    -- name, arguments and columns (as 0005 created them), outer ORDER BY, branches
    FOR v_fn IN
        SELECT * FROM (VALUES
            ('similarity_search',
             'query_embedding %1$s.vector, match_threshold double precision DEFAULT 0.78,
              match_count integer DEFAULT 10, source_filter text DEFAULT NULL,
              model_filter text DEFAULT NULL, record_metrics boolean DEFAULT false',
             'id bigint, source_table text, source_id text, model text, content text,
              metadata jsonb, similarity double precision',
             'r.similarity DESC', v_sim),
            ('hybrid_search',
             'query_text text, query_embedding %1$s.vector,
              vector_weight double precision DEFAULT 0.7, keyword_weight double precision DEFAULT 0.3,
              match_threshold double precision DEFAULT 0.5, match_count integer DEFAULT 10,
              source_filter text DEFAULT NULL, model_filter text DEFAULT NULL,
              record_metrics boolean DEFAULT false',
             'id bigint, source_table text, source_id text, model text, content text,
              metadata jsonb, vector_score double precision, keyword_score double precision,
              combined_score double precision',
             'r.combined_score DESC, r.id', v_hyb),
            ('hybrid_search_rrf',
             'query_text text, query_embedding %1$s.vector, match_count integer DEFAULT 10,
              rrf_k integer DEFAULT 60, source_filter text DEFAULT NULL,
              model_filter text DEFAULT NULL, record_metrics boolean DEFAULT false',
             'id bigint, source_table text, source_id text, model text, content text,
              metadata jsonb, vector_rank integer, keyword_rank integer, rrf_score double precision',
             'r.rrf_score DESC, r.id', v_rrf)
        ) AS f(name, arguments, columns, order_by, branches)
    LOOP
        v_body := format(E'\n-- generated by public.generate_search_functions() from embedding_models\n'
            'SELECT r.* FROM (\n%s\n) r\nORDER BY %s\n',
            array_to_string(v_fn.branches, E'\nUNION ALL\n'), v_fn.order_by);
        IF v_body IS DISTINCT FROM (SELECT p.prosrc FROM pg_proc p WHERE p.proname = v_fn.name
                                      AND p.pronamespace = 'public'::regnamespace) THEN
            EXECUTE format('CREATE OR REPLACE FUNCTION public.%I(%s) RETURNS TABLE (%s) '
                           'LANGUAGE sql STABLE AS %L',
                           v_fn.name, format(v_fn.arguments, v_ext), v_fn.columns, v_body);
            v_changed := v_changed || v_fn.name;
        END IF;
    END LOOP;
    RETURN v_changed;
END
$fn$;
REVOKE ALL ON FUNCTION public.generate_search_functions() FROM PUBLIC;


-- 5. Regenerate also when a model's tuned effort changes (it may move between the inlined and
-- the general path).
DROP TRIGGER IF EXISTS embedding_models_regenerate_search ON public.embedding_models;
CREATE TRIGGER embedding_models_regenerate_search
    AFTER UPDATE OF model, dimensions, index_kind, search_effort OR DELETE OR TRUNCATE
    ON public.embedding_models
    FOR EACH STATEMENT EXECUTE FUNCTION public.embedding_models_regenerate_search();

SELECT public.refresh_keyword_stats();
SELECT public.generate_search_functions();

-- 6. Degenerate vectors per source and model, as data: a zero vector (cosine undefined), one of
-- extreme magnitude (a norm outside 1e-6..1e6: pgvector's single-precision sums over- or
-- underflow far beyond), one whose distance to itself is undefined (NaN: zero, or overflow), and
-- exact duplicates of another row of the model (ties). pgvector refuses NaN and infinite
-- components, so no stored vector holds one: the sync skips and counts them.
CREATE OR REPLACE VIEW public.vector_search_stats AS
SELECT e.source_table,
       e.model,
       e.dimensions,
       count(*)          AS embeddings,
       max(e.updated_at) AS last_updated,
       m.index_kind,
       m.index_name,
       m.rows_at_build,
       m.built_at,
       (SELECT count(*) FROM public.search_performance_metrics s
         WHERE s.model = e.model)                                   AS searches,
       (SELECT avg(s.execution_time_ms) FROM public.search_performance_metrics s
         WHERE s.model = e.model AND s.created_at > now() - interval '1 hour') AS avg_search_ms_last_hour,
       count(*) FILTER (WHERE e.norm = 0)                           AS zero_vectors,
       count(*) FILTER (WHERE e.norm > 0 AND (e.norm < 1e-6 OR e.norm > 1e6)) AS extreme_magnitude,
       count(*) FILTER (WHERE e.self_distance = 'NaN')              AS undefined_distance,
       count(*) FILTER (WHERE e.copies > 1)                         AS duplicate_vectors,
       m.search_effort,
       m.search_recall_lower
  FROM (SELECT x.source_table, x.model, x.dimensions, x.updated_at,
               vector_norm(x.embedding) AS norm,
               x.embedding <=> x.embedding AS self_distance,
               count(*) OVER (PARTITION BY x.model, x.embedding) AS copies
          FROM public.embeddings x) e
  LEFT JOIN public.embedding_models m ON m.model = e.model
 GROUP BY e.source_table, e.model, e.dimensions, m.index_kind, m.index_name, m.rows_at_build,
          m.built_at, m.search_effort, m.search_recall_lower;
