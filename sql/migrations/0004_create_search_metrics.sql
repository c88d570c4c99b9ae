-- description: Create search_performance_metrics and the vector_search_stats view
-- depends: 0003
CREATE TABLE IF NOT EXISTS public.search_performance_metrics (
    id                bigserial PRIMARY KEY,
    search_type       text        NOT NULL,
    model             text,
    source_filter     text,
    result_count      integer     NOT NULL,
    execution_time_ms double precision NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS search_performance_metrics_recent_idx
    ON public.search_performance_metrics (created_at, search_type);

-- Per source and model: how many embeddings, how fresh, which index serves them, how searches do.
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
         WHERE s.model = e.model AND s.created_at > now() - interval '1 hour') AS avg_search_ms_last_hour
  FROM public.embeddings e
  LEFT JOIN public.embedding_models m ON m.model = e.model
 GROUP BY e.source_table, e.model, e.dimensions, m.index_kind, m.index_name, m.rows_at_build,
          m.built_at;

DO $grant$
BEGIN
    IF coalesce(current_setting('cartrita.app_role', true), '') <> '' THEN
        EXECUTE format('GRANT SELECT, INSERT ON public.search_performance_metrics TO %I',
                       current_setting('cartrita.app_role'));
        EXECUTE format('GRANT USAGE ON SEQUENCE public.search_performance_metrics_id_seq TO %I',
                       current_setting('cartrita.app_role'));
        EXECUTE format('GRANT SELECT ON public.vector_search_stats TO %I',
                       current_setting('cartrita.app_role'));
    END IF;
END
$grant$;
