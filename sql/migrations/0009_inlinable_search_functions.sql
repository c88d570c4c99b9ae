-- description: Search functions PostgreSQL can inline: per-model SQL generated from embedding_models
-- depends: 0008
-- similarity_search, hybrid_search and hybrid_search_rrf become LANGUAGE sql functions that the
-- planner inlines into the caller's query, so a search costs what the equivalent hand-written
-- query costs: no PL/pgSQL call, no EXECUTE re-planning, and a prepared call keeps its plan.
-- Each model with an exact or HNSW index gets one static branch with its name as a literal (so
-- the planner matches its partial index); a gate made only of the arguments picks the branch at
-- run time. Everything else runs the 0008 implementations, kept as *_general: argument errors,
-- IVFFlat models (they set ivfflat.probes per model), models added since the last generation,
-- ambiguous dimensions, and record_metrics => true.
-- The HNSW settings the functions used to set per call become this database's defaults.

-- 1. The 0008 implementations, renamed: the general path.
ALTER FUNCTION public.similarity_search(vector, double precision, integer, text, text, boolean)
    RENAME TO similarity_search_general;
ALTER FUNCTION public.hybrid_search(text, vector, double precision, double precision,
                                    double precision, integer, text, text, boolean)
    RENAME TO hybrid_search_general;
ALTER FUNCTION public.hybrid_search_rrf(text, vector, integer, integer, text, text, boolean)
    RENAME TO hybrid_search_rrf_general;
-- They return at most match_count rows. The planner's default guess for a set-returning function
-- (1000 rows) would make a prepared call's generic plan look dearer than re-planning every call.
ALTER FUNCTION public.similarity_search_general(vector, double precision, integer, text, text, boolean)
    ROWS 10;
ALTER FUNCTION public.hybrid_search_general(text, vector, double precision, double precision,
                                            double precision, integer, text, text, boolean)
    ROWS 10;
ALTER FUNCTION public.hybrid_search_rrf_general(text, vector, integer, integer, text, text, boolean)
    ROWS 10;

-- 2. Database defaults for every session: HNSW searches 80 candidates (recall@10 0.97-0.99 at
-- 100k rows, measured; pgvector's default of 40 gave about 0.95), and a filtered query keeps
-- scanning the index until it has its rows, in exact distance order.
DO $do$
BEGIN
    PERFORM '[1]'::vector;  -- loads pgvector, so the settings below are validated
    EXECUTE format('ALTER DATABASE %I SET hnsw.ef_search = 80', current_database());
    EXECUTE format('ALTER DATABASE %I SET hnsw.iterative_scan = strict_order', current_database());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'could not set the HNSW defaults of database % (%); run as its owner: '
        'ALTER DATABASE % SET hnsw.ef_search = 80; ALTER DATABASE % SET hnsw.iterative_scan = strict_order',
        current_database(), SQLERRM, quote_ident(current_database()), quote_ident(current_database());
END
$do$;

-- 3. The generator. Returns the functions it rewrote (none when they already match the registry).
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
    -- a sub-select: computed once per call, and the same row estimate whether or not the
    -- caller's text is known when planning, so a prepared call settles on one generic plan
    c_kw   constant text := '(SELECT websearch_to_tsquery(''english'', coalesce(query_text, '''')))';
    c_src  constant text := '(source_filter IS NULL OR e.source_table = source_filter)';
    -- match_count as a LIMIT: clamped, because a branch's LIMIT is evaluated (and a constant one
    -- folded) even when the gate below it is false: -1 or 2^31-1 must reach the general path's
    -- error, not fail as "LIMIT must not be negative" or overflow in match_count * 4
    c_count constant text := 'least(greatest(match_count, 0), 1000)';
BEGIN
    -- one generation at a time; the lock is held to the end of the transaction
    PERFORM pg_advisory_xact_lock(1128353108, 9);  -- 'CART', migration 0009
    SELECT quote_ident(n.nspname) INTO v_ext
      FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
     WHERE x.extname = 'vector';
    FOR m IN
        SELECT em.model, em.dimensions,
               (SELECT count(*) FROM public.embedding_models o
                 WHERE o.dimensions = em.dimensions) AS same_dims
          FROM public.embedding_models em
         WHERE em.index_kind IN ('exact', 'hnsw')
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
                          LIMIT %7$s * 4) c
                  WHERE 1 - c.distance >= match_threshold) v
           FULL JOIN
                (SELECT e.id, ts_rank_cd(e.search_vector, %6$s, 32)::double precision AS rank
                   FROM public.embeddings e
                  WHERE e.search_vector @@ %6$s
                    AND e.model = %2$L AND %3$s
                    AND %4$s AND %5$s
                  ORDER BY rank DESC
                  LIMIT %7$s * 4) k ON k.id = v.id) s
         ORDER BY score DESC, s.id
         LIMIT %7$s) p
  JOIN public.embeddings e ON e.id = p.id', v_dist, m.model, c_src, c_hyb, v_gate, c_kw, c_count);
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
                          LIMIT %7$s * 4) c) v
           FULL JOIN
                (SELECT k.id, row_number() OVER (ORDER BY k.rank DESC, k.id)::integer AS r
                   FROM (SELECT e.id, ts_rank_cd(e.search_vector, %6$s, 32) AS rank
                           FROM public.embeddings e
                          WHERE e.search_vector @@ %6$s
                            AND e.model = %2$L AND %3$s
                            AND %4$s AND %5$s
                          ORDER BY rank DESC
                          LIMIT %7$s * 4) k) k ON k.id = v.id) s
         ORDER BY score DESC, s.id
         LIMIT %7$s) p
  JOIN public.embeddings e ON e.id = p.id', v_dist, m.model, c_src, c_rrf, v_gate, c_kw, c_count);
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

-- 4. Regenerate when index maintenance changes the registry: rebuild_vector_indexes() and
-- embeddings_index set index_kind, and remove models with no rows. A model inserted by a writer
-- (upsert_embedding, a sync) is searched through the general path until the next index pass, so
-- the application's write path never runs DDL.
CREATE OR REPLACE FUNCTION public.embedding_models_regenerate_search()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $fn$
BEGIN
    PERFORM public.generate_search_functions();
    RETURN NULL;
END
$fn$;
REVOKE ALL ON FUNCTION public.embedding_models_regenerate_search() FROM PUBLIC;

DROP TRIGGER IF EXISTS embedding_models_regenerate_search ON public.embedding_models;
CREATE TRIGGER embedding_models_regenerate_search
    AFTER UPDATE OF model, dimensions, index_kind OR DELETE OR TRUNCATE ON public.embedding_models
    FOR EACH STATEMENT EXECUTE FUNCTION public.embedding_models_regenerate_search();

SELECT public.generate_search_functions();
