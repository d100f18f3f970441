-- The scheduler's questions stay cheap with a long queue: how many wait per image (up to what could
-- start), and when the next retry backoff ends.
CREATE INDEX jobs_queued_image ON jobs (state, image);
CREATE INDEX jobs_run_after ON jobs (state, run_after);
