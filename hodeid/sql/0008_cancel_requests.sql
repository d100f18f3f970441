-- A cancel request is stored with the job, as procrastinate stores abort requests: one that could
-- not be delivered yet (the agent away, hodeid restarting) is delivered when the agent reconnects,
-- and a job whose cancel was asked for is never retried. NULL: no cancel asked for.
ALTER TABLE jobs ADD COLUMN cancel_reason TEXT;
ALTER TABLE jobs ADD COLUMN cancel_grace REAL;   -- seconds SIGTERM -> SIGKILL; NULL: the job's own --grace
