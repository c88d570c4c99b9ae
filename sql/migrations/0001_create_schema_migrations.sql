-- description: Create the migration history table
-- depends:
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    id            bigserial PRIMARY KEY,
    version       text        NOT NULL,
    name          text        NOT NULL,
    checksum      char(64)    NOT NULL,
    applied_at    timestamptz NOT NULL DEFAULT now(),
    execution_ms  integer     NOT NULL DEFAULT 0,
    applied_by    text        NOT NULL DEFAULT current_user,
    success       boolean     NOT NULL,
    error         text,
    forced_reason text
);
-- one successful application per version; failed attempts are kept beside it
CREATE UNIQUE INDEX IF NOT EXISTS schema_migrations_applied_once
    ON public.schema_migrations (version) WHERE success;
COMMENT ON TABLE public.schema_migrations IS
    'Applied and failed migrations of sql/migrations, with the sha256 of each file';
