-- Every run writes five or more run_events rows and a stage_results row per stage, and
-- each row ran triggers of its own: the foreign-key check against runs, and for the
-- terminal events the webhook queueing function. Together they were about a third of
-- Postgres' time per run under load.
--
-- The foreign keys go. Event and stage rows are written only in a transaction that
-- holds their run's row (CreateRun inserts it in the same statement; the worker and
-- CancelRun lock it first), and runs are never deleted, so the check could not fail.
ALTER TABLE run_events DROP CONSTRAINT run_events_run_id_fkey;
ALTER TABLE stage_results DROP CONSTRAINT stage_results_run_id_fkey;

-- The statements that insert events queue their webhook deliveries themselves, only
-- for runs that have a webhook_url (services/runs/events.py, worker/pure.py).
DROP TRIGGER run_events_webhook ON run_events;
DROP FUNCTION queue_webhook_delivery();
