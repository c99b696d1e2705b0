-- Idempotency records of creating POSTs and run-creation rate counters (both shared by every
-- gateway replica and every runs replica, so they live here rather than in memory).

CREATE TABLE idempotency_keys (
    account_id    text NOT NULL,
    key           text NOT NULL,
    method        text NOT NULL,
    path          text NOT NULL,
    request_hash  text NOT NULL,
    state         text NOT NULL CHECK (state IN ('in_flight', 'done')),
    http_status   integer,
    body          text,
    created_at    timestamptz NOT NULL,
    locked_at     timestamptz NOT NULL,
    completed_at  timestamptz,
    PRIMARY KEY (account_id, key)
);
-- Purging rows past the 24 h retention.
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Runs created per account in 10-second buckets; a rolling hour is the sum of the last 360.
CREATE TABLE rate_buckets (
    account_id  text NOT NULL,
    bucket      bigint NOT NULL,  -- unix seconds, a multiple of the bucket width
    count       integer NOT NULL,
    PRIMARY KEY (account_id, bucket)
);
