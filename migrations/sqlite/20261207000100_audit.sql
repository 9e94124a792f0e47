-- Verifiable history (issue #17, docs/merkle.md, docs/checkpoints.md).
-- merkle_nodes: the RFC 6962 tree over the log, the perfect subtrees from
-- level 4 up (one node per 16 events and the levels above), written by the
-- tree builder off the append path; derived data, rebuilt from the events
-- if lost, but append-only like the log (a node never changes).
CREATE TABLE merkle_nodes (
    level INTEGER NOT NULL CHECK (level >= 4 AND level < 64),
    idx   INTEGER NOT NULL CHECK (idx >= 0),
    hash  TEXT NOT NULL,
    PRIMARY KEY (level, idx)
) STRICT;

-- checkpoints: signed tree heads (a C2SP signed note), append-only; also
-- written outside the database (witness file, URL) by the node that signs.
CREATE TABLE checkpoints (
    tree_size    INTEGER NOT NULL CHECK (tree_size >= 0),
    key_id       TEXT NOT NULL,
    root         TEXT NOT NULL,
    log_hash     TEXT NOT NULL,
    signed_at_ms INTEGER NOT NULL,
    note         TEXT NOT NULL,
    PRIMARY KEY (tree_size, key_id)
) STRICT;

CREATE TRIGGER merkle_nodes_reject_update BEFORE UPDATE ON merkle_nodes
BEGIN
    SELECT RAISE(ABORT, 'IMX0315: the event log is append-only: UPDATE of merkle_nodes is rejected');
END;

CREATE TRIGGER merkle_nodes_reject_delete BEFORE DELETE ON merkle_nodes
BEGIN
    SELECT RAISE(ABORT, 'IMX0315: the event log is append-only: DELETE from merkle_nodes is rejected');
END;

CREATE TRIGGER checkpoints_reject_update BEFORE UPDATE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'IMX0315: the event log is append-only: UPDATE of checkpoints is rejected');
END;

CREATE TRIGGER checkpoints_reject_delete BEFORE DELETE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'IMX0315: the event log is append-only: DELETE from checkpoints is rejected');
END;
