-- Cartrita v1 schema (synthetic demo copy of the real v1 layout).
-- Run as one script on an empty database; cartrita_assets.demo.dataset loads the rows.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE users (
    id            serial PRIMARY KEY,
    email         text UNIQUE NOT NULL,
    name          text,
    password_hash text,
    role          text,
    is_admin      boolean,
    created_at    timestamptz
);

CREATE TABLE conversations (
    id         serial PRIMARY KEY,
    user_id    integer REFERENCES users (id) ON DELETE CASCADE,
    speaker    text,
    text       text,
    model      text,
    created_at timestamptz
);
CREATE INDEX conversations_user_id_idx ON conversations (user_id);

CREATE TABLE conversation_messages (
    id              serial PRIMARY KEY,
    conversation_id integer REFERENCES conversations (id) ON DELETE CASCADE,
    content         text,
    metadata        jsonb,
    embeddings      vector(1536)
);
CREATE INDEX conversation_messages_conversation_id_idx
    ON conversation_messages (conversation_id);

CREATE TABLE chat_sessions (
    session_id uuid PRIMARY KEY,
    user_id    integer REFERENCES users (id) ON DELETE CASCADE,
    title      text,
    created_at timestamptz
);

CREATE TABLE chat_messages (
    id          serial PRIMARY KEY,
    session_id  uuid REFERENCES chat_sessions (session_id) ON DELETE CASCADE,
    role        text,
    content     text,
    tokens_used integer,
    model_used  text,
    created_at  timestamptz
);
CREATE INDEX chat_messages_session_id_created_at_idx ON chat_messages (session_id, created_at);

CREATE TABLE knowledge_entries (
    id               serial PRIMARY KEY,
    user_id          integer REFERENCES users (id) ON DELETE CASCADE,
    title            varchar(500),
    content          text,
    embedding        vector(1536),
    embedding_large  vector(3072),
    tags             text[],
    category         text,
    importance_score real,
    search_vector    tsvector,
    created_at       timestamptz,
    updated_at       timestamptz
);
CREATE INDEX knowledge_entries_search_vector_idx ON knowledge_entries USING gin (search_vector);
CREATE INDEX knowledge_entries_user_id_idx ON knowledge_entries (user_id);

CREATE FUNCTION knowledge_entries_search_vector_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_vector :=
        setweight(to_tsvector('english', coalesce(NEW.title, '')), 'A') ||
        setweight(to_tsvector('english', coalesce(NEW.content, '')), 'B');
    RETURN NEW;
END
$$;

CREATE TRIGGER knowledge_entries_search_vector_trg
    BEFORE INSERT OR UPDATE ON knowledge_entries
    FOR EACH ROW EXECUTE FUNCTION knowledge_entries_search_vector_update();

CREATE TABLE journal_entries (
    id        uuid PRIMARY KEY,
    user_id   integer REFERENCES users (id) ON DELETE CASCADE,
    content   text,
    mood      text,
    embedding text
);

CREATE TABLE tool_embeddings (
    id          serial PRIMARY KEY,
    tool_name   text UNIQUE,
    description text,
    embedding   text
);

CREATE TABLE audit_log (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event   text,
    payload jsonb,
    at      timestamptz
);

-- v1 never gave this table a key: duplicate rows and NULLs are possible.
CREATE TABLE user_settings (
    user_id integer,
    key     text,
    value   text
);

CREATE SEQUENCE invoice_number_seq START WITH 1000 INCREMENT BY 7;
CREATE SEQUENCE support_ticket_seq;

CREATE VIEW active_users AS
SELECT u.id, u.email, u.name, max(c.created_at) AS last_seen
FROM users u
JOIN conversations c ON c.user_id = u.id
WHERE u.role IS DISTINCT FROM 'disabled'
GROUP BY u.id, u.email, u.name;

COMMENT ON TABLE users IS 'Cartrita accounts (v1). Passwords are bcrypt hashes.';
COMMENT ON TABLE knowledge_entries IS
    'User knowledge base: 1536-d embeddings, optional 3072-d, tsvector kept by trigger.';
COMMENT ON TABLE user_settings IS 'Legacy key/value settings; no primary key.';
COMMENT ON COLUMN journal_entries.embedding IS 'Embedding serialised as text, e.g. [0.1,0.2]';
