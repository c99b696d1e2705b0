-- Whether billing holds a reservation for the run. Only such runs' run.created and
-- terminal events get billing's copy (weft.billing.<run_id>.<event>); a free run on a
-- user's own account reserves nothing, so billing never reads its events. Runs from
-- before this column may hold one: they keep getting copies (billing acks a copy for
-- a run it holds nothing for).
ALTER TABLE runs ADD COLUMN holds_reservation boolean NOT NULL DEFAULT true;
