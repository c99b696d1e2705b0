-- A run's time limit (issue 18): `timeout_seconds` is fixed at creation (the call's,
-- else the workflow's, else the configured maximum; NULL for runs from before: no
-- limit); `deadline_at` is set when a worker first starts it. Recovery finds the runs
-- past it that no worker ended by this index.
ALTER TABLE runs ADD COLUMN timeout_seconds int, ADD COLUMN deadline_at timestamptz;
CREATE INDEX runs_deadline_idx ON runs (deadline_at)
    WHERE deadline_at IS NOT NULL AND status IN ('pending', 'running', 'awaiting_input');
