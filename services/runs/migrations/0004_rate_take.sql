-- One run-creation rate take in one statement, the account's lock inside it.
-- PL/pgSQL gives each statement a fresh snapshot (READ COMMITTED), so the sum read after
-- the lock sees every take committed before it: exact under concurrency, one round trip,
-- and callers can embed it in the statement that inserts the run (lock held in-server).
-- lock_class keeps these advisory locks apart from others' (see services/runs/ratelimit.py).
CREATE FUNCTION rate_take(lock_class int, p_account text, p_bucket bigint, p_limit bigint,
                          p_window bigint, OUT n bigint, OUT oldest bigint, OUT took int)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_class, hashtext(p_account));
    SELECT coalesce(sum(b.count), 0)::bigint, min(b.bucket) INTO n, oldest
    FROM rate_buckets b WHERE b.account_id = p_account AND b.bucket > p_bucket - p_window;
    DELETE FROM rate_buckets b WHERE b.account_id = p_account AND b.bucket <= p_bucket - p_window;
    IF n < p_limit THEN
        INSERT INTO rate_buckets AS b (account_id, bucket, count) VALUES (p_account, p_bucket, 1)
        ON CONFLICT (account_id, bucket) DO UPDATE SET count = b.count + 1;
        took := 1;
    ELSE
        took := 0;
    END IF;
END $$;
