-- A reservation is confirmed when its run's `run.created` event arrives (the run
-- committed). Unconfirmed ones past a TTL belong to runs that never committed (the runs
-- service died between Reserve and commit) and are released by a sweeper.
ALTER TABLE reservations ADD COLUMN confirmed_at timestamptz;
ALTER TABLE reservations ADD COLUMN expired boolean NOT NULL DEFAULT false;
CREATE INDEX reservations_unconfirmed ON reservations (created_at)
    WHERE status = 'open' AND confirmed_at IS NULL;
