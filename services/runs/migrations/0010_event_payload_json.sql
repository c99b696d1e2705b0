-- run_events.payload is stored and read back whole (SSE replay, webhook bodies), never
-- queried into: `json` keeps the text as published, while `jsonb` parsed and rebuilt
-- every event (five or more per run) on insert and printed it again on every read.
ALTER TABLE run_events ALTER COLUMN payload TYPE json USING payload::json;
