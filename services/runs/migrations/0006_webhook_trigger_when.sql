-- Only the event types that can queue a webhook delivery call the trigger function: the
-- others (run.created, run.started, stage.*) were a PL/pgSQL call each that did nothing.
DROP TRIGGER run_events_webhook ON run_events;
CREATE TRIGGER run_events_webhook AFTER INSERT ON run_events
    FOR EACH ROW
    WHEN (NEW.type IN ('run.completed', 'run.failed', 'run.canceled', 'run.awaiting_input'))
    EXECUTE FUNCTION queue_webhook_delivery();
