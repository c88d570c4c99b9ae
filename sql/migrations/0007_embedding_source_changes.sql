-- description: Record which source rows changed (stale_embeddings_sensor re-embeds only those)
-- depends: 0006

-- One row per inserted, updated or deleted source row, written by the trigger
-- cartrita_embedding_changes that embeddings_index installs on each embedding source. The sensor
-- reads it by transaction (xact_id below the oldest running transaction: every such row is final,
-- whatever order the transactions committed in) and prunes what it has handed to a run.
-- op: I(nsert), U(pdate) or D(elete). source_id is the id column's text form (id::text, the same
-- value embeddings.source_id holds).
CREATE TABLE IF NOT EXISTS public.embedding_source_changes (
    id           bigserial   PRIMARY KEY,
    source_table text        NOT NULL,
    source_id    text        NOT NULL,
    op           char(1)     NOT NULL CHECK (op IN ('I', 'U', 'D')),
    changed_at   timestamptz NOT NULL DEFAULT now(),
    xact_id      xid8        NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX IF NOT EXISTS embedding_source_changes_xact_idx
    ON public.embedding_source_changes (xact_id);

-- The trigger function: TG_ARGV[0] = the source name recorded (embeddings.source_table),
-- TG_ARGV[1] = the id column. SECURITY DEFINER with a pinned search_path, so the roles that write
-- the source tables need no privilege on embedding_source_changes; only its owner (and superusers)
-- may attach it to a table, as EXECUTE is revoked from PUBLIC (firing a trigger checks nothing).
-- An update that changes the id records the old id as deleted and the new one as updated.
CREATE OR REPLACE FUNCTION public.record_embedding_source_change()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $fn$
DECLARE
    v_old text;
    v_new text;
BEGIN
    IF TG_NARGS <> 2 THEN
        RAISE EXCEPTION 'record_embedding_source_change(source name, id column): got % arguments',
            TG_NARGS;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        EXECUTE format('SELECT ($1).%I::text', TG_ARGV[1]) INTO v_old USING OLD;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        EXECUTE format('SELECT ($1).%I::text', TG_ARGV[1]) INTO v_new USING NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND v_old IS DISTINCT FROM v_new AND v_old IS NOT NULL THEN
        INSERT INTO public.embedding_source_changes (source_table, source_id, op)
        VALUES (TG_ARGV[0], v_old, 'D');
    END IF;
    IF coalesce(v_new, v_old) IS NOT NULL THEN
        INSERT INTO public.embedding_source_changes (source_table, source_id, op)
        VALUES (TG_ARGV[0], coalesce(v_new, v_old), left(TG_OP, 1));
    END IF;
    RETURN NULL;
END
$fn$;

REVOKE ALL ON FUNCTION public.record_embedding_source_change() FROM PUBLIC;

COMMENT ON TABLE public.embedding_source_changes IS
    'Source rows changed since the stale_embeddings_sensor last looked (written by trigger '
    'cartrita_embedding_changes, pruned by the sensor)';
