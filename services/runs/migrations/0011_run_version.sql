-- Every change of a run is written by one statement (services/runs/store/writer.py) and
-- applies only if the row is still at the version it was computed from: the fence that
-- keeps a worker that lost its run (canceled, taken over) from writing to it, without
-- holding a row lock across the change's computation.
ALTER TABLE runs ADD COLUMN version bigint NOT NULL DEFAULT 1;
