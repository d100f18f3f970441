-- The stamp (start time since boot, and the boot) of the job's process group leader, stored with
-- its pid: hodeid signals that pid only while the process holding it has this stamp. Rows from
-- before have none, and their pids are never signalled.
ALTER TABLE jobs ADD COLUMN pid_start TEXT NOT NULL DEFAULT '';
