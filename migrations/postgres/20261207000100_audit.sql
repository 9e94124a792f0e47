-- Verifiable history (issue #17, docs/merkle.md, docs/checkpoints.md).
-- merkle_nodes: the RFC 6962 tree over the log, the perfect subtrees from
-- level 4 up (one node per 16 events and the levels above), written by the
-- tree builder off the append path; derived data, rebuilt from the events
-- if lost, but append-only like the log (a node never changes).
CREATE TABLE merkle_nodes (
    level INTEGER NOT NULL CHECK (level >= 4 AND level < 64),
    idx   BIGINT NOT NULL CHECK (idx >= 0),
    hash  TEXT NOT NULL,
    PRIMARY KEY (level, idx)
);

-- checkpoints: signed tree heads (a C2SP signed note), append-only; also
-- written outside the database (witness file, URL) by the node that signs.
CREATE TABLE checkpoints (
    tree_size    BIGINT NOT NULL CHECK (tree_size >= 0),
    key_id       TEXT NOT NULL,
    root         TEXT NOT NULL,
    log_hash     TEXT NOT NULL,
    signed_at_ms BIGINT NOT NULL,
    note         TEXT NOT NULL,
    PRIMARY KEY (tree_size, key_id)
);

CREATE FUNCTION imx_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'IMX0315: the event log is append-only: % of % is rejected', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER merkle_nodes_reject_update_delete BEFORE UPDATE OR DELETE ON merkle_nodes
    FOR EACH ROW EXECUTE FUNCTION imx_audit_append_only();
CREATE TRIGGER merkle_nodes_reject_truncate BEFORE TRUNCATE ON merkle_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION imx_audit_append_only();
CREATE TRIGGER checkpoints_reject_update_delete BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION imx_audit_append_only();
CREATE TRIGGER checkpoints_reject_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION imx_audit_append_only();
