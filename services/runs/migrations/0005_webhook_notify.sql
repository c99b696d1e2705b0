-- The webhook dispatcher wakes when a delivery is queued, not on every outbox row: most
-- runs have no webhook, and a claim query per event was a cost every run paid.
CREATE FUNCTION notify_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('weft_webhooks', '');
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_deliveries_notify AFTER INSERT ON webhook_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION notify_webhooks();
