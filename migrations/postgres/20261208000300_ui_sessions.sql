-- The web UI's browser sessions (docs/ui.md), shared by every node on the
-- database and kept across restarts. Only the SHA-256 of a session id is
-- stored; an API key session keeps the key's hash, never the key. Rows are
-- deleted when a session ends: this is not the event log.
CREATE TABLE ui_sessions (
    session_hash    TEXT PRIMARY KEY,      -- hex SHA-256 of the cookie value
    csrf            TEXT NOT NULL,         -- the CSRF token bound to the session
    principal       TEXT NOT NULL,         -- key:<id>, jwt:<sub> or anonymous
    roles           TEXT NOT NULL,         -- JSON array of role names
    key_hash        TEXT,                  -- an API key session: the key's hash
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,  -- lifetime end (or the JWT's exp)
    idle_expires_at TIMESTAMPTZ NOT NULL   -- moved on when used
);
CREATE INDEX ui_sessions_idle ON ui_sessions (idle_expires_at);
