-- The one-round-trip append no longer reads the heads in plpgsql
-- (imx_check_log_heads): it takes the log lock itself and writes positions
-- and seqs following the heads this node committed; under the lock,
-- UNIQUE (position) and UNIQUE (run_id, seq) reject it when another writer got
-- there first. Only a lost lease still needs an explicit error, raised by
-- this helper from a CASE branch that runs only then.
DROP FUNCTION imx_check_log_heads(BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, TEXT, UUID[], BIGINT[], TEXT[]);

CREATE FUNCTION imx_fail(code TEXT, message TEXT) RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION '%', message USING ERRCODE = code;
END;
$$;

-- Run and step rows are rewritten on every transition: room on the page lets
-- PostgreSQL update them in place (HOT), without touching their indexes.
ALTER TABLE runs SET (fillfactor = 80);
ALTER TABLE steps SET (fillfactor = 80);
