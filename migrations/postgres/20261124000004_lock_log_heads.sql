-- Takes the log lock, then reads the log head and the given runs' heads.
-- A VOLATILE plpgsql function's queries take a fresh snapshot in READ
-- COMMITTED, so they see every append committed while it waited for the
-- lock; calling it from the append's write statement saves a round trip.
CREATE FUNCTION imx_lock_log_heads(lock_key BIGINT, run_ids UUID[], after_rows BIGINT)
RETURNS TABLE (head_run_id UUID, head_seq BIGINT, head_hash TEXT)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- after_rows is unused: passing the write counts orders this call after the writes.
    PERFORM pg_advisory_xact_lock(lock_key);
    RETURN QUERY
        (SELECT NULL::uuid, e.position, e.log_hash FROM events e ORDER BY e.position DESC LIMIT 1)
        UNION ALL
        SELECT r.id, last.seq, last.hash FROM UNNEST(run_ids) AS r(id)
        CROSS JOIN LATERAL (SELECT ev.seq, ev.hash FROM events ev WHERE ev.run_id = r.id
                            ORDER BY ev.seq DESC LIMIT 1) AS last;
END;
$$;
