-- hodeid stores the start of a job that ends within milliseconds together with its end, in one
-- write. Its history still shows it running from started_at: both rows come from this trigger, in
-- this order, so from_state always names the state the job really left.
DROP TRIGGER jobs_state_event;
CREATE TRIGGER jobs_state_event AFTER UPDATE OF state ON jobs WHEN OLD.state IS NOT NEW.state BEGIN
    INSERT INTO job_events (job_id, at, from_state, to_state, worker_id, reason)
    SELECT NEW.id, NEW.started_at, 'assigned', 'running', NEW.worker_id, ''
    WHERE OLD.state = 'assigned' AND NEW.state NOT IN ('queued', 'running') AND NEW.started_at IS NOT NULL;
    INSERT INTO job_events (job_id, at, from_state, to_state, worker_id, reason)
    VALUES (NEW.id, (julianday('now') - 2440587.5) * 86400.0,
            CASE WHEN OLD.state = 'assigned' AND NEW.state NOT IN ('queued', 'running') AND NEW.started_at IS NOT NULL
                 THEN 'running' ELSE OLD.state END,
            NEW.state, NEW.worker_id, NEW.reason);
END;
