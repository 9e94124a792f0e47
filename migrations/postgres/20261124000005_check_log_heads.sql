-- The one-round-trip append: the caller computed positions and hashes from
-- the heads it remembers; this takes the log lock and proves those heads are
-- still the real ones (a fresh snapshot, as in imx_lock_log_heads), and that
-- every lease the append completes was held. Any difference raises IX001 and
-- the whole statement is rolled back; the caller then takes the
-- four-round-trip path, which reads the heads under the lock.
CREATE FUNCTION imx_check_log_heads(lock_key BIGINT, after_rows BIGINT, completed BIGINT,
    completed_expected BIGINT, log_position BIGINT, log_hash TEXT, run_ids UUID[],
    run_seqs BIGINT[], run_hashes TEXT[])
RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head_position BIGINT;
    head_hash TEXT;
    stale BIGINT;
BEGIN
    IF completed <> completed_expected THEN
        RAISE EXCEPTION 'imx: a completed task''s lease is no longer held' USING ERRCODE = 'IX001';
    END IF;
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT e.position, e.log_hash INTO head_position, head_hash FROM events e ORDER BY e.position DESC LIMIT 1;
    IF COALESCE(head_position, 0) <> log_position OR COALESCE(head_hash, repeat('0', 64)) <> log_hash THEN
        RAISE EXCEPTION 'imx: the log head moved' USING ERRCODE = 'IX001';
    END IF;
    SELECT count(*) INTO stale
        FROM UNNEST(run_ids, run_seqs, run_hashes) AS r(id, seq, hash)
        LEFT JOIN LATERAL (SELECT ev.seq, ev.hash FROM events ev WHERE ev.run_id = r.id
                           ORDER BY ev.seq DESC LIMIT 1) AS last ON TRUE
        WHERE COALESCE(last.seq, 0) <> r.seq OR COALESCE(last.hash, repeat('0', 64)) <> r.hash;
    IF stale > 0 THEN
        RAISE EXCEPTION 'imx: a run head moved' USING ERRCODE = 'IX001';
    END IF;
    RETURN TRUE;
END;
$$;
