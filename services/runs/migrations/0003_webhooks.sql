-- Webhook signing secrets (one per paying account) and deliveries of run events.
-- A delivery row is queued by a trigger on run_events, so it commits in the same
-- transaction as its event whoever records it (API process or worker).

CREATE TABLE webhook_secrets (
    account_id text PRIMARY KEY,               -- team_id or user_id (who pays)
    secret text NOT NULL,                      -- whsec_...
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id text PRIMARY KEY,                       -- the event id (evt_...): stable across attempts
    run_id text NOT NULL REFERENCES runs (id),
    account_id text NOT NULL,
    event_type text NOT NULL,
    url text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts int NOT NULL DEFAULT 0,
    last_error text NOT NULL DEFAULT '',
    last_status_code int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_run_idx ON webhook_deliveries (run_id, created_at);

-- Every attempt, for operators (weft-admin webhooks deliveries --run ...).
CREATE TABLE webhook_attempts (
    delivery_id text NOT NULL REFERENCES webhook_deliveries (id),
    attempt int NOT NULL,
    status_code int NOT NULL DEFAULT 0,        -- 0: no HTTP answer (timeout, refused, ...)
    error text NOT NULL DEFAULT '',
    duration_ms int NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_id, attempt)
);

CREATE FUNCTION queue_webhook_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.type IN ('run.completed', 'run.failed', 'run.canceled', 'run.awaiting_input') THEN
        INSERT INTO webhook_deliveries (id, run_id, account_id, event_type, url, created_at)
        SELECT NEW.event_id, r.id, r.account_id, NEW.type, r.webhook_url, NEW.created_at
        FROM runs r
        WHERE r.id = NEW.run_id AND coalesce(r.webhook_url, '') <> ''
        ON CONFLICT (id) DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER run_events_webhook AFTER INSERT ON run_events
    FOR EACH ROW EXECUTE FUNCTION queue_webhook_delivery();
