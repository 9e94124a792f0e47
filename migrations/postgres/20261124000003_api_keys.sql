-- API keys for `imx serve`: only the SHA-256 of each key is kept, so a
-- leaked database does not leak usable keys.
CREATE TABLE api_keys (
    key_id     UUID PRIMARY KEY,
    name       TEXT NOT NULL,
    roles      TEXT NOT NULL,              -- JSON array of role names
    key_hash   TEXT NOT NULL UNIQUE,       -- hex SHA-256 of the whole key
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
