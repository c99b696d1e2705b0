-- Workflows (versioned definitions), runs, their stage results and events, and the
-- transactional outbox that the relay publishes to JetStream.

CREATE TABLE workflows (
    id text PRIMARY KEY,                       -- wf_...
    slug text NOT NULL UNIQUE,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    current_version int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workflow_versions (
    workflow_id text NOT NULL REFERENCES workflows (id),
    version int NOT NULL,
    definition jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, version)
);

CREATE TABLE runs (
    id text PRIMARY KEY,                       -- run_... (time-ordered)
    workflow_id text NOT NULL REFERENCES workflows (id),
    workflow_version int NOT NULL,
    user_id text NOT NULL,
    team_id text NOT NULL DEFAULT '',
    account_id text NOT NULL,                  -- who pays: team_id or user_id
    status text NOT NULL DEFAULT 'pending' CHECK (
        status IN ('pending', 'running', 'awaiting_input', 'completed', 'failed', 'canceled')
    ),
    input_text text NOT NULL DEFAULT '',
    params jsonb NOT NULL DEFAULT '{}',
    attachment_ids text[] NOT NULL DEFAULT '{}',
    webhook_url text,
    result jsonb,
    error jsonb,                               -- {code, message, stage}
    human_input_request jsonb,                 -- {stage, prompt, fields, context}
    human_inputs jsonb NOT NULL DEFAULT '{}',  -- answers keyed by stage id
    cost_micros bigint NOT NULL DEFAULT 0,
    next_event_seq int NOT NULL DEFAULT 1,
    worker_id text,
    heartbeat_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    completed_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (workflow_id, workflow_version) REFERENCES workflow_versions (workflow_id, version)
);
CREATE INDEX runs_user_id_idx ON runs (user_id, id DESC);
CREATE INDEX runs_status_heartbeat_idx ON runs (status, heartbeat_at);

CREATE TABLE stage_results (
    run_id text NOT NULL REFERENCES runs (id),
    stage_index int NOT NULL,
    stage_id text NOT NULL,
    stage_type text NOT NULL,
    status text NOT NULL,                      -- running | completed | failed
    output jsonb,
    model text,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cost_micros bigint NOT NULL DEFAULT 0,
    duration_ms int NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (run_id, stage_id)
);

CREATE TABLE run_events (
    run_id text NOT NULL REFERENCES runs (id),
    seq int NOT NULL,
    event_id text NOT NULL UNIQUE,             -- evt_...: the dedupe key everywhere
    type text NOT NULL,
    stage text,
    payload jsonb NOT NULL,                    -- the RunEvent as published
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    subject text NOT NULL,
    msg_id text NOT NULL,                      -- Nats-Msg-Id: JetStream de-duplicates on it
    payload bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;

-- Long-polls (GET run ?wait=) wake on status changes, whoever made them (API or worker).
CREATE FUNCTION notify_run_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('weft_run_status', NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER runs_status_notify AFTER UPDATE OF status ON runs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION notify_run_status();

-- The outbox relay wakes on new rows instead of waiting for its next poll.
CREATE FUNCTION notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('weft_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox();
