-- description: Create upsert_embedding, similarity_search, hybrid_search(_rrf) and rebuild_vector_indexes
-- depends: 0004

-- sha256 over the model and the whitespace-normalised text: a change of either re-embeds.
CREATE OR REPLACE FUNCTION public.embedding_content_hash(p_model text, p_content text)
RETURNS char(64)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT encode(sha256(convert_to(
        p_model || E'\n' || regexp_replace(btrim(p_content), '\s+', ' ', 'g'), 'UTF8')), 'hex')
$fn$;

-- The expression an ANN index on one model is built on (and that queries must repeat to use it):
-- vector(d) up to 2000 dims, halfvec(d) up to 4000 (pgvector's index limits).
CREATE OR REPLACE FUNCTION public.embedding_index_expression(p_dimensions integer)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN p_dimensions <= 2000 THEN format('embedding::vector(%s)', p_dimensions)
                ELSE format('embedding::halfvec(%s)', p_dimensions) END
$fn$;

CREATE OR REPLACE FUNCTION public.upsert_embedding(
    p_source_table text,
    p_source_id    text,
    p_content      text,
    p_embedding    vector,
    p_model        text  DEFAULT 'text-embedding-3-small',
    p_metadata     jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (embedding_id bigint, action text)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_hash char(64);
    v_dims integer;
BEGIN
    IF p_source_table IS NULL OR p_source_id IS NULL OR p_content IS NULL
       OR p_embedding IS NULL OR p_model IS NULL THEN
        RAISE EXCEPTION 'upsert_embedding: source table, source id, content, embedding and model are required'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_hash := public.embedding_content_hash(p_model, p_content);
    SELECT m.dimensions INTO v_dims FROM public.embedding_models m WHERE m.model = p_model;
    IF v_dims IS NOT NULL AND v_dims <> vector_dims(p_embedding) THEN
        RAISE EXCEPTION 'upsert_embedding: model % has % dimensions, got %',
            p_model, v_dims, vector_dims(p_embedding)
            USING ERRCODE = 'data_exception',
                  HINT = 'Use one model name per embedding dimension.';
    END IF;
    IF v_dims IS NULL THEN
        INSERT INTO public.embedding_models (model, dimensions)
        VALUES (p_model, vector_dims(p_embedding)) ON CONFLICT (model) DO NOTHING;
    END IF;
    -- an unchanged hash is not rewritten: no dead tuple, no index churn
    SELECT e.id INTO embedding_id FROM public.embeddings e
     WHERE e.source_table = p_source_table AND e.source_id = p_source_id
       AND e.model = p_model AND e.content_hash = v_hash;
    IF FOUND THEN
        action := 'unchanged';
        RETURN NEXT;
        RETURN;
    END IF;
    INSERT INTO public.embeddings AS e
           (source_table, source_id, model, dimensions, content, content_hash, embedding, metadata)
    VALUES (p_source_table, p_source_id, p_model, vector_dims(p_embedding), p_content, v_hash,
            p_embedding, coalesce(p_metadata, '{}'::jsonb))
    ON CONFLICT (source_table, source_id, model) DO UPDATE
       SET content = EXCLUDED.content, content_hash = EXCLUDED.content_hash,
           embedding = EXCLUDED.embedding, dimensions = EXCLUDED.dimensions,
           metadata = EXCLUDED.metadata, updated_at = now()
    RETURNING e.id, CASE WHEN e.xmax = 0 THEN 'inserted' ELSE 'updated' END
         INTO embedding_id, action;
    RETURN NEXT;
END
$fn$;

-- Nearest neighbours of one model through its ANN index (the query repeats the index
-- expression); iterative scans keep filtered queries returning match_count rows.
CREATE OR REPLACE FUNCTION public.vector_candidates(
    p_query       vector,
    p_model       text,
    p_count       integer,
    p_source      text DEFAULT NULL)
RETURNS TABLE (id bigint, similarity double precision)
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_expr  text := public.embedding_index_expression(vector_dims(p_query));
    v_cast  text := CASE WHEN vector_dims(p_query) <= 2000 THEN 'vector' ELSE 'halfvec' END;
    v_probes integer;
BEGIN
    PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
    PERFORM set_config('ivfflat.iterative_scan', 'relaxed_order', true);
    PERFORM set_config('hnsw.ef_search', greatest(40, least(1000, p_count * 2))::text, true);
    SELECT (m.index_params ->> 'probes')::integer INTO v_probes
      FROM public.embedding_models m WHERE m.model = p_model;
    IF v_probes IS NOT NULL THEN
        PERFORM set_config('ivfflat.probes', v_probes::text, true);
    END IF;
    -- relaxed_order may return neighbours slightly out of order: sort the few rows again
    RETURN QUERY EXECUTE format(
        'SELECT c.id, c.similarity FROM (
             SELECT e.id, 1 - (%1$s <=> $1::%2$s(%3$s)) AS similarity
               FROM public.embeddings e
              WHERE e.model = %4$L AND ($2::text IS NULL OR e.source_table = $2)
              ORDER BY %1$s <=> $1::%2$s(%3$s)
              LIMIT $3) c
          ORDER BY c.similarity DESC',
        v_expr, v_cast, vector_dims(p_query), p_model)
    USING p_query, p_source, p_count;
END
$fn$;

CREATE OR REPLACE FUNCTION public.resolve_search_model(p_query vector, p_model text)
RETURNS text
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_models text[];
BEGIN
    IF p_model IS NOT NULL THEN
        RETURN p_model;
    END IF;
    SELECT array_agg(m.model ORDER BY m.model) INTO v_models
      FROM public.embedding_models m WHERE m.dimensions = vector_dims(p_query);
    IF v_models IS NULL THEN
        RETURN NULL;  -- nothing of that dimension: an empty result, not an error
    ELSIF array_length(v_models, 1) > 1 THEN
        RAISE EXCEPTION 'several models have % dimensions (%): pass model_filter',
            vector_dims(p_query), array_to_string(v_models, ', ')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN v_models[1];
END
$fn$;

CREATE OR REPLACE FUNCTION public.record_search_metric(
    p_type text, p_model text, p_source text, p_rows integer, p_started timestamptz)
RETURNS void
LANGUAGE sql AS $fn$
    INSERT INTO public.search_performance_metrics
           (search_type, model, source_filter, result_count, execution_time_ms)
    VALUES (p_type, p_model, p_source, p_rows,
            extract(epoch FROM clock_timestamp() - p_started) * 1000)
$fn$;

CREATE OR REPLACE FUNCTION public.check_search_arguments(p_count integer, p_threshold double precision)
RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
    IF p_count IS NULL OR p_count < 1 OR p_count > 1000 THEN
        RAISE EXCEPTION 'match_count must be between 1 and 1000, got %', p_count
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_threshold IS NULL OR p_threshold < -1 OR p_threshold > 1 THEN
        RAISE EXCEPTION 'match_threshold must be between -1 and 1, got %', p_threshold
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION public.similarity_search(
    query_embedding vector,
    match_threshold double precision DEFAULT 0.78,
    match_count     integer DEFAULT 10,
    source_filter   text DEFAULT NULL,
    model_filter    text DEFAULT NULL,
    record_metrics  boolean DEFAULT false)
RETURNS TABLE (id bigint, source_table text, source_id text, model text, content text,
               metadata jsonb, similarity double precision)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_started timestamptz := clock_timestamp();
    v_model   text;
    v_rows    integer;
BEGIN
    PERFORM public.check_search_arguments(match_count, match_threshold);
    v_model := public.resolve_search_model(query_embedding, model_filter);
    RETURN QUERY
        SELECT e.id, e.source_table, e.source_id, e.model, e.content, e.metadata, c.similarity
          FROM public.vector_candidates(query_embedding, v_model, match_count, source_filter) c
          JOIN public.embeddings e ON e.id = c.id
         WHERE c.similarity >= match_threshold
         ORDER BY c.similarity DESC;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF record_metrics THEN
        PERFORM public.record_search_metric('similarity', v_model, source_filter, v_rows, v_started);
    END IF;
END
$fn$;

-- Weighted hybrid: vector similarity (0..1 after the threshold) and the keyword rank normalised
-- to 0..1 (ts_rank_cd with normalisation 32 = rank / (rank + 1)). A row can come back through
-- either side; the other side then contributes its own score (0 when it does not match).
CREATE OR REPLACE FUNCTION public.hybrid_search(
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
LANGUAGE plpgsql AS $fn$
DECLARE
    v_started timestamptz := clock_timestamp();
    v_model   text;
    v_query   tsquery := websearch_to_tsquery('english', coalesce(query_text, ''));
    v_rows    integer;
BEGIN
    PERFORM public.check_search_arguments(match_count, match_threshold);
    IF vector_weight IS NULL OR keyword_weight IS NULL OR vector_weight < 0 OR keyword_weight < 0
       OR vector_weight + keyword_weight = 0 THEN
        RAISE EXCEPTION 'vector_weight and keyword_weight must be >= 0 and not both 0'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_model := public.resolve_search_model(query_embedding, model_filter);
    RETURN QUERY
    WITH vec AS (
        SELECT c.id, c.similarity
          FROM public.vector_candidates(query_embedding, v_model, match_count * 4, source_filter) c
         WHERE c.similarity >= match_threshold
    ), kw AS (
        SELECT e.id, ts_rank_cd(e.search_vector, v_query, 32)::double precision AS rank
          FROM public.embeddings e
         WHERE e.search_vector @@ v_query AND e.model = v_model
           AND (source_filter IS NULL OR e.source_table = source_filter)
         ORDER BY rank DESC
         LIMIT match_count * 4
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

-- Reciprocal rank fusion: each side contributes 1 / (rrf_k + rank); no score scaling needed.
CREATE OR REPLACE FUNCTION public.hybrid_search_rrf(
    query_text      text,
    query_embedding vector,
    match_count     integer DEFAULT 10,
    rrf_k           integer DEFAULT 60,
    source_filter   text DEFAULT NULL,
    model_filter    text DEFAULT NULL,
    record_metrics  boolean DEFAULT false)
RETURNS TABLE (id bigint, source_table text, source_id text, model text, content text,
               metadata jsonb, vector_rank integer, keyword_rank integer, rrf_score double precision)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_started timestamptz := clock_timestamp();
    v_model   text;
    v_query   tsquery := websearch_to_tsquery('english', coalesce(query_text, ''));
    v_rows    integer;
BEGIN
    PERFORM public.check_search_arguments(match_count, 0);
    IF rrf_k IS NULL OR rrf_k < 1 THEN
        RAISE EXCEPTION 'rrf_k must be >= 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_model := public.resolve_search_model(query_embedding, model_filter);
    RETURN QUERY
    WITH vec AS (
        SELECT c.id, row_number() OVER (ORDER BY c.similarity DESC)::integer AS r
          FROM public.vector_candidates(query_embedding, v_model, match_count * 4, source_filter) c
    ), kw AS (
        SELECT k.id, row_number() OVER (ORDER BY k.rank DESC, k.id)::integer AS r
          FROM (SELECT e.id, ts_rank_cd(e.search_vector, v_query, 32) AS rank
                  FROM public.embeddings e
                 WHERE e.search_vector @@ v_query AND e.model = v_model
                   AND (source_filter IS NULL OR e.source_table = source_filter)
                 ORDER BY rank DESC LIMIT match_count * 4) k
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

-- The index rule, per model (pgvector's guidance):
--   fewer than exact_below rows          -> no ANN index: an exact scan is fast and exact
--   vectors fit in hnsw_max_bytes         -> HNSW (m 16, ef_construction 64): best speed/recall,
--                                            its build is fast while the graph fits in memory
--   larger                                -> IVFFlat, lists = rows/1000 (<= 1M rows) or
--                                            sqrt(rows) above, probes = sqrt(lists)
CREATE OR REPLACE FUNCTION public.choose_vector_index(
    p_rows bigint, p_dimensions integer,
    exact_below bigint DEFAULT 10000, hnsw_max_bytes bigint DEFAULT 2147483648)
RETURNS TABLE (kind text, params jsonb, reason text)
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    v_bytes bigint := p_rows * p_dimensions * (CASE WHEN p_dimensions <= 2000 THEN 4 ELSE 2 END);
    v_lists integer;
BEGIN
    IF p_rows < exact_below THEN
        RETURN QUERY SELECT 'exact', '{}'::jsonb,
            format('%s rows < %s: an exact scan is fast enough and has perfect recall', p_rows, exact_below);
    ELSIF v_bytes <= hnsw_max_bytes THEN
        RETURN QUERY SELECT 'hnsw', '{"m": 16, "ef_construction": 64}'::jsonb,
            format('%s rows x %s dims = %s MB of vectors <= %s MB: HNSW', p_rows, p_dimensions,
                   v_bytes / 1048576, hnsw_max_bytes / 1048576);
    ELSE
        v_lists := greatest(1, CASE WHEN p_rows <= 1000000 THEN p_rows / 1000
                                    ELSE floor(sqrt(p_rows))::bigint END);
        RETURN QUERY SELECT 'ivfflat',
            jsonb_build_object('lists', v_lists, 'probes', greatest(1, floor(sqrt(v_lists))::integer)),
            format('%s MB of vectors > %s MB: IVFFlat with lists = %s', v_bytes / 1048576,
                   hnsw_max_bytes / 1048576, v_lists);
    END IF;
END
$fn$;

-- Rebuilds every model's ANN index by the rule above (a new index is built, then swapped in,
-- in one transaction) and runs ANALYZE. Returns what it decided and why.
CREATE OR REPLACE FUNCTION public.rebuild_vector_indexes(
    exact_below bigint DEFAULT 10000, hnsw_max_bytes bigint DEFAULT 2147483648)
RETURNS TABLE (model text, rows_indexed bigint, index_kind text, index_name text, reason text)
LANGUAGE plpgsql AS $fn$
DECLARE
    m       record;
    choice  record;
    v_name  text;
    v_expr  text;
    v_ops   text;
    v_rows  bigint;
BEGIN
    INSERT INTO public.embedding_models (model, dimensions)
    SELECT DISTINCT e.model, e.dimensions FROM public.embeddings e
    ON CONFLICT ON CONSTRAINT embedding_models_pkey DO NOTHING;
    FOR m IN SELECT em.model, em.dimensions, em.index_name FROM public.embedding_models em ORDER BY 1 LOOP
        SELECT count(*) INTO v_rows FROM public.embeddings e WHERE e.model = m.model;
        SELECT * INTO choice FROM public.choose_vector_index(v_rows, m.dimensions, exact_below, hnsw_max_bytes);
        v_name := 'embeddings_ann_' || left(md5(m.model), 16);
        EXECUTE format('DROP INDEX IF EXISTS public.%I', v_name || '_new');
        IF choice.kind <> 'exact' THEN
            v_expr := public.embedding_index_expression(m.dimensions);
            v_ops := CASE WHEN m.dimensions <= 2000 THEN 'vector_cosine_ops' ELSE 'halfvec_cosine_ops' END;
            EXECUTE format('CREATE INDEX %I ON public.embeddings USING %s ((%s) %s) WITH (%s) WHERE model = %L',
                v_name || '_new', choice.kind, v_expr, v_ops,
                CASE WHEN choice.kind = 'hnsw'
                     THEN format('m = %s, ef_construction = %s', choice.params ->> 'm', choice.params ->> 'ef_construction')
                     ELSE format('lists = %s', choice.params ->> 'lists') END,
                m.model);
        END IF;
        EXECUTE format('DROP INDEX IF EXISTS public.%I', v_name);
        IF choice.kind <> 'exact' THEN
            EXECUTE format('ALTER INDEX public.%I RENAME TO %I', v_name || '_new', v_name);
        END IF;
        UPDATE public.embedding_models em
           SET index_kind = choice.kind, index_params = choice.params, rows_at_build = v_rows,
               built_at = now(), reason = choice.reason,
               index_name = CASE WHEN choice.kind = 'exact' THEN NULL ELSE v_name END
         WHERE em.model = m.model;
        model := m.model; rows_indexed := v_rows; index_kind := choice.kind;
        index_name := CASE WHEN choice.kind = 'exact' THEN NULL ELSE v_name END;
        reason := choice.reason;
        RETURN NEXT;
    END LOOP;
    ANALYZE public.embeddings;
END
$fn$;
