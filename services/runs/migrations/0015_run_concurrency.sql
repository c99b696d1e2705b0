-- Concurrency limits and priority (issue 18). A run holds a slot of its workflow's and of
-- its account's limit while `running` or `awaiting_input`; the limits are fixed on the
-- run at creation (the definition's, the plan's; NULL: none). A run refused a slot waits
-- `pending` with `queued_at` set until a worker's dispatcher gives it a job again, the
-- higher `priority` (0-9) first, then the older.
ALTER TABLE runs
    ADD COLUMN priority smallint NOT NULL DEFAULT 5,
    ADD COLUMN concurrency_limit int,
    ADD COLUMN account_concurrency_limit int,
    ADD COLUMN queued_at timestamptz;

CREATE INDEX runs_active_workflow_idx ON runs (workflow_id)
    WHERE status IN ('running', 'awaiting_input');
CREATE INDEX runs_active_account_idx ON runs (account_id)
    WHERE status IN ('running', 'awaiting_input');
CREATE INDEX runs_queued_workflow_idx ON runs (workflow_id, priority DESC, created_at, id)
    WHERE status = 'pending' AND queued_at IS NOT NULL;
CREATE INDEX runs_queued_account_idx ON runs (account_id, priority DESC, created_at, id)
    WHERE status = 'pending' AND queued_at IS NOT NULL;

-- The scopes' advisory locks of one statement, taken in one order (two statements never
-- wait in a cycle); held to its commit, so the counts read after them are exact.
CREATE FUNCTION slot_lock(lock_class int, p_scopes text[]) RETURNS int
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    k int;
    n int := 0;
BEGIN
    FOR k IN SELECT DISTINCT hashtext(s) FROM unnest(p_scopes) AS s ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(lock_class, k);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

-- Whether run p_id may take a slot now: the runs holding one, the waiting runs ahead of it
-- (higher priority, or as high and older) and those before it in the same statement
-- (p_*_rank counts itself) stay within each limit. PL/pgSQL reads with a fresh snapshot
-- per statement (READ COMMITTED), so after slot_lock it sees every commit before its own.
CREATE FUNCTION slot_free(p_id text, p_priority int, p_created timestamptz,
                          p_workflow text, p_workflow_limit int, p_workflow_rank int,
                          p_account text, p_account_limit int, p_account_rank int)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    n bigint;
BEGIN
    IF p_workflow_limit IS NOT NULL THEN
        SELECT count(*) INTO n FROM runs
        WHERE workflow_id = p_workflow AND status IN ('running', 'awaiting_input');
        n := n + p_workflow_rank + (
            SELECT count(*) FROM runs
            WHERE workflow_id = p_workflow AND status = 'pending' AND queued_at IS NOT NULL
              AND id <> p_id
              AND (priority > p_priority
                   OR (priority = p_priority AND (created_at, id) < (p_created, p_id))));
        IF n > p_workflow_limit THEN
            RETURN false;
        END IF;
    END IF;
    IF p_account_limit IS NOT NULL THEN
        SELECT count(*) INTO n FROM runs
        WHERE account_id = p_account AND status IN ('running', 'awaiting_input');
        n := n + p_account_rank + (
            SELECT count(*) FROM runs
            WHERE account_id = p_account AND status = 'pending' AND queued_at IS NOT NULL
              AND id <> p_id
              AND (priority > p_priority
                   OR (priority = p_priority AND (created_at, id) < (p_created, p_id))));
        IF n > p_account_limit THEN
            RETURN false;
        END IF;
    END IF;
    RETURN true;
END $$;
