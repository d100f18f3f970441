-- Retries: a lost (or, when asked, failed) job goes back to the queue, not before run_after.
ALTER TABLE jobs ADD COLUMN run_after REAL;
