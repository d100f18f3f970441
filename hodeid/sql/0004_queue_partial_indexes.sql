-- Only queued rows belong in the scheduler's indexes. With partial indexes a job enters them once
-- and leaves them once: its later changes (running, finished) write nothing to them, which keeps
-- each state change, a transaction of its own, small. `list --state` keeps an index by state.
DROP INDEX jobs_by_state;
DROP INDEX jobs_queued_image;
DROP INDEX jobs_run_after;
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_queue ON jobs (priority DESC, id) WHERE state = 'queued';
CREATE INDEX jobs_retry_wait ON jobs (run_after) WHERE state = 'queued' AND run_after IS NOT NULL;
