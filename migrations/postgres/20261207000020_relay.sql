-- The log relay (`imx serve --relay-topic`): per relay (named by its topic),
-- the last log position the broker acknowledged, and the lease that makes
-- one node among many the active relay. Times are ms since the Unix epoch
-- (the same integers on both backends); `token` fences a holder whose lease
-- was taken over.
CREATE TABLE relay (
    name          TEXT PRIMARY KEY,
    position      BIGINT NOT NULL DEFAULT 0 CHECK (position >= 0),
    holder        TEXT NOT NULL,
    token         TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
