-- Run surgery (forkRun): the run a fork was forked from, so that a run's
-- forks can be listed. Filled from `run.started` (its `fork`), like every
-- read-model column, and rebuilt with the projections.
ALTER TABLE runs ADD COLUMN forked_from TEXT;
CREATE INDEX runs_forked_from ON runs (forked_from, created_at) WHERE forked_from IS NOT NULL;
