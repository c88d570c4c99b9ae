-- description: Retrieval presets: named hybrid configurations chosen by name in hybrid_search/hybrid_search_rrf, usage counted per preset
-- depends: 0010
-- 1. search_presets holds named hybrid configurations: the fusion method (weighted scores or
--    reciprocal rank fusion), the weights, the RRF k, the candidate pool each side contributes
--    and two thresholds. The four shipped presets come from benchmarks/search_quality.py (SciFact
--    and Cranfield, the local model), which evaluates every preset by name.
-- 2. hybrid_search(query_text, query_embedding, preset => 'name', ...) and
--    hybrid_search_rrf(query_text, query_embedding, preset => 'name', ...) search with a preset.
--    An unknown name is one error listing the known ones.
-- 3. search_preset_usage counts searches per preset and model (not on a standby or in a
--    read-only transaction, where nothing can be written); vector_search_stats shows it.
-- 4. generate_search_functions (0010's) reads back only the generated overload of each name.

-- 1. The presets.
CREATE TABLE IF NOT EXISTS public.search_presets (
    name            text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    fusion          text NOT NULL CHECK (fusion IN ('weighted', 'rrf')),
    vector_weight   double precision NOT NULL DEFAULT 0.7
                    CHECK (vector_weight >= 0 AND vector_weight < 'Infinity'),
    keyword_weight  double precision NOT NULL DEFAULT 0.3
                    CHECK (keyword_weight >= 0 AND keyword_weight < 'Infinity'),
    rrf_k           integer NOT NULL DEFAULT 60 CHECK (rrf_k BETWEEN 1 AND 1000000),
    candidate_pool  integer CHECK (candidate_pool BETWEEN 1 AND 4000),
    match_threshold double precision NOT NULL DEFAULT -1 CHECK (match_threshold BETWEEN -1 AND 1),
    min_score       double precision NOT NULL DEFAULT 0 CHECK (min_score >= 0 AND min_score <= 1),
    match_count     integer NOT NULL DEFAULT 10 CHECK (match_count BETWEEN 1 AND 1000),
    description     text NOT NULL DEFAULT '',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (vector_weight + keyword_weight > 0)
);
COMMENT ON TABLE public.search_presets IS
    'Named hybrid retrieval configurations: hybrid_search(text, vector, preset => name)';
COMMENT ON COLUMN public.search_presets.fusion IS
    'weighted: (vector_weight * similarity + keyword_weight * scaled BM25) / (sum of weights); '
    'rrf: sum of 1 / (rrf_k + rank) over the sides with a weight above 0';
COMMENT ON COLUMN public.search_presets.candidate_pool IS
    'candidates each side contributes before fusion; NULL = 4 x match_count (hybrid_search''s)';
COMMENT ON COLUMN public.search_presets.match_threshold IS
    'a vector candidate needs at least this cosine similarity (-1: every candidate)';
COMMENT ON COLUMN public.search_presets.min_score IS
    'a row is returned only when its fused score reaches this (0: every row)';

INSERT INTO public.search_presets
       (name, fusion, vector_weight, keyword_weight, rrf_k, candidate_pool, match_threshold,
        min_score, description)
VALUES ('balanced', 'weighted', 0.7, 0.3, 60, NULL, -1, 0,
        'the guide''s 0.7/0.3 weights over both sides (nDCG@10 0.722 SciFact, 0.411 Cranfield)'),
       ('rrf', 'rrf', 1, 1, 60, NULL, -1, 0,
        'reciprocal rank fusion, k 60: no score scales to balance'),
       ('keyword', 'weighted', 0, 1, 60, NULL, -1, 0,
        'BM25 keywords only: exact terms, codes and names'),
       ('semantic', 'weighted', 1, 0, 60, NULL, -1, 0,
        'vectors only: paraphrases and questions without shared words')
ON CONFLICT (name) DO NOTHING;

-- 3. Usage per preset and model.
CREATE TABLE IF NOT EXISTS public.search_preset_usage (
    preset       text NOT NULL REFERENCES public.search_presets (name)
                 ON UPDATE CASCADE ON DELETE CASCADE,
    model        text NOT NULL,
    searches     bigint NOT NULL DEFAULT 0,
    last_used_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (preset, model)
);

-- Counting runs as the table's owner, so the application role needs no write privilege on it;
-- a standby or a read-only transaction searches without counting rather than failing.
CREATE OR REPLACE FUNCTION public.record_preset_use(p_preset text, p_model text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $fn$
BEGIN
    IF pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on' THEN
        RETURN;
    END IF;
    INSERT INTO public.search_preset_usage AS u (preset, model, searches, last_used_at)
    VALUES (p_preset, coalesce(p_model, '(no model)'), 1, now())
    ON CONFLICT (preset, model)
    DO UPDATE SET searches = u.searches + 1, last_used_at = excluded.last_used_at;
END
$fn$;

-- The preset named, or one error listing the known ones.
CREATE OR REPLACE FUNCTION public.search_preset(p_name text)
RETURNS public.search_presets
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v public.search_presets;
BEGIN
    SELECT * INTO v FROM public.search_presets p WHERE p.name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown search preset %; known presets: %', quote_literal(coalesce(p_name, 'NULL')),
            (SELECT coalesce(string_agg(p.name, ', ' ORDER BY p.name), 'none')
               FROM public.search_presets p)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Add one with INSERT INTO search_presets, or use one of the known names.';
    END IF;
    RETURN v;
END
$fn$;

-- 2. One search with a preset: both sides' candidates (a side whose weight is 0 is skipped),
-- fully joined and fused as the preset says. Ranks are 1-based within each side.
CREATE OR REPLACE FUNCTION public.preset_search(
    query_text      text,
    query_embedding vector,
    p               public.search_presets,
    match_count     integer,
    source_filter   text,
    model_filter    text)
RETURNS TABLE (id bigint, vector_score double precision, keyword_score double precision,
               vector_rank integer, keyword_rank integer, score double precision)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_model text;
    v_pool  integer := coalesce(p.candidate_pool, match_count * 4);
BEGIN
    PERFORM public.check_search_arguments(match_count, p.match_threshold);
    v_model := public.resolve_search_model(query_embedding, model_filter);
    RETURN QUERY
    WITH vec AS (
        SELECT c.id, c.similarity, row_number() OVER (ORDER BY c.similarity DESC, c.id)::integer AS r
          FROM public.vector_candidates(query_embedding, v_model, v_pool, source_filter) c
         WHERE p.vector_weight > 0 AND c.similarity >= p.match_threshold
    ), kw AS (
        SELECT k.id, k.score / max(k.score) OVER () AS rank,
               row_number() OVER (ORDER BY k.score DESC, k.id)::integer AS r
          FROM public.keyword_candidates(query_text, v_model, source_filter, v_pool) k
         WHERE p.keyword_weight > 0
    ), pooled AS (
        SELECT coalesce(vec.id, kw.id) AS id, coalesce(vec.similarity, 0) AS vs,
               coalesce(kw.rank, 0) AS ks, vec.r AS vr, kw.r AS kr
          FROM vec FULL JOIN kw ON kw.id = vec.id
    ), fused AS (
        SELECT x.*, CASE WHEN p.fusion = 'rrf'
                    THEN coalesce(1.0 / (p.rrf_k + x.vr), 0) + coalesce(1.0 / (p.rrf_k + x.kr), 0)
                    ELSE (p.vector_weight * x.vs + p.keyword_weight * x.ks)
                         / (p.vector_weight + p.keyword_weight) END::double precision AS s
          FROM pooled x
    )
    SELECT f.id, f.vs, f.ks, f.vr, f.kr, f.s
      FROM fused f
     WHERE f.s >= p.min_score
     ORDER BY f.s DESC, f.id
     LIMIT match_count;
END
$fn$;

CREATE OR REPLACE FUNCTION public.hybrid_search(
    query_text      text,
    query_embedding vector,
    preset          text,
    match_count     integer DEFAULT NULL,
    source_filter   text DEFAULT NULL,
    model_filter    text DEFAULT NULL)
RETURNS TABLE (id bigint, source_table text, source_id text, model text, content text,
               metadata jsonb, vector_score double precision, keyword_score double precision,
               combined_score double precision)
LANGUAGE plpgsql ROWS 10 AS $fn$
DECLARE
    v_preset public.search_presets := public.search_preset(preset);
    v_model  text;
BEGIN
    RETURN QUERY
    SELECT e.id, e.source_table, e.source_id, e.model, e.content, e.metadata,
           s.vector_score, s.keyword_score, s.score
      FROM public.preset_search(query_text, query_embedding, v_preset,
                                coalesce(match_count, v_preset.match_count), source_filter,
                                model_filter) s
      JOIN public.embeddings e ON e.id = s.id
     ORDER BY s.score DESC, s.id;
    v_model := public.resolve_search_model(query_embedding, model_filter);
    PERFORM public.record_preset_use(v_preset.name, v_model);
END
$fn$;

CREATE OR REPLACE FUNCTION public.hybrid_search_rrf(
    query_text      text,
    query_embedding vector,
    preset          text,
    match_count     integer DEFAULT NULL,
    source_filter   text DEFAULT NULL,
    model_filter    text DEFAULT NULL)
RETURNS TABLE (id bigint, source_table text, source_id text, model text, content text,
               metadata jsonb, vector_rank integer, keyword_rank integer, rrf_score double precision)
LANGUAGE plpgsql ROWS 10 AS $fn$
DECLARE
    v_preset public.search_presets := public.search_preset(preset);
    v_model  text;
BEGIN
    IF v_preset.fusion <> 'rrf' THEN
        RAISE EXCEPTION 'search preset % fuses by %, not by rank: call hybrid_search(query_text, query_embedding, preset => %)',
            quote_literal(v_preset.name), v_preset.fusion, quote_literal(v_preset.name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT e.id, e.source_table, e.source_id, e.model, e.content, e.metadata,
           s.vector_rank, s.keyword_rank, s.score
      FROM public.preset_search(query_text, query_embedding, v_preset,
                                coalesce(match_count, v_preset.match_count), source_filter,
                                model_filter) s
      JOIN public.embeddings e ON e.id = s.id
     ORDER BY s.score DESC, s.id;
    v_model := public.resolve_search_model(query_embedding, model_filter);
    PERFORM public.record_preset_use(v_preset.name, v_model);
END
$fn$;

DO $grant$
BEGIN
    IF coalesce(current_setting('cartrita.app_role', true), '') <> '' THEN
        EXECUTE format('GRANT SELECT ON public.search_presets, public.search_preset_usage TO %I',
                       current_setting('cartrita.app_role'));
    END IF;
END
$grant$;

-- 4. The generator (0010's, unchanged but for one line): with the preset overloads beside them,
-- the generated functions are read back by name and their generated argument list.
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
                                      AND p.pronamespace = 'public'::regnamespace
                                      AND NOT 'preset' = ANY(coalesce(p.proargnames, '{}'))) THEN
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

SELECT public.generate_search_functions();

-- 3. Searches per preset for each model (NULL: no preset search yet), after 0010's columns.
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
       m.search_recall_lower,
       (SELECT jsonb_object_agg(u.preset, u.searches ORDER BY u.preset)
          FROM public.search_preset_usage u WHERE u.model = e.model)  AS preset_searches
  FROM (SELECT x.source_table, x.model, x.dimensions, x.updated_at,
               vector_norm(x.embedding) AS norm,
               x.embedding <=> x.embedding AS self_distance,
               count(*) OVER (PARTITION BY x.model, x.embedding) AS copies
          FROM public.embeddings x) e
  LEFT JOIN public.embedding_models m ON m.model = e.model
 GROUP BY e.source_table, e.model, e.dimensions, m.index_kind, m.index_name, m.rows_at_build,
          m.built_at, m.search_effort, m.search_recall_lower;
