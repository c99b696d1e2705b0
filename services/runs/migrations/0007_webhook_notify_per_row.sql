-- A statement trigger fires even when its INSERT inserted nothing, and the insert in
-- queue_webhook_delivery() runs for every terminal event: the dispatcher was woken (and
-- ran its claim query) after every run's completion, webhook or not. Per row, it wakes
-- only when a delivery was queued; PostgreSQL folds a transaction's identical
-- notifications into one.
DROP TRIGGER webhook_deliveries_notify ON webhook_deliveries;
CREATE TRIGGER webhook_deliveries_notify AFTER INSERT ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION notify_webhooks();
