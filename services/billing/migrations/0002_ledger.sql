-- Prices, accounts with cached balances, reservations, the immutable ledger, allocations.
-- Money is bigint micro-dollars (1 USD = 1,000,000) everywhere.

CREATE TABLE prices (
    model text PRIMARY KEY,
    input_micros_per_mtok bigint NOT NULL CHECK (input_micros_per_mtok >= 0),
    output_micros_per_mtok bigint NOT NULL CHECK (output_micros_per_mtok >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Cached sums of the ledger, updated in the same transaction as each entry.
-- balance = grants - captures; reserved = open reservations.
CREATE TABLE accounts (
    account_id text PRIMARY KEY,
    balance_micros bigint NOT NULL DEFAULT 0 CHECK (balance_micros >= 0),
    reserved_micros bigint NOT NULL DEFAULT 0 CHECK (reserved_micros >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (reserved_micros <= balance_micros)
);

-- One row per run that asked for credits; the state machine open -> captured | released.
CREATE TABLE reservations (
    run_id text PRIMARY KEY,
    account_id text NOT NULL,
    user_id text NOT NULL DEFAULT '',
    team_id text NOT NULL DEFAULT '',
    amount_micros bigint NOT NULL CHECK (amount_micros >= 0),
    status text NOT NULL CHECK (status IN ('open', 'captured', 'released')),
    captured_micros bigint NOT NULL DEFAULT 0,
    released_micros bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    closed_at timestamptz
);
CREATE INDEX reservations_member ON reservations (account_id, user_id, status);

CREATE TABLE ledger (
    id text PRIMARY KEY,
    account_id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('grant', 'reserve', 'capture', 'release')),
    amount_micros bigint NOT NULL CHECK (amount_micros >= 0),
    run_id text,
    user_id text NOT NULL DEFAULT '',
    note text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Exactly once per run: a second reserve, capture or release for a run_id cannot commit.
CREATE UNIQUE INDEX ledger_once_per_run ON ledger (run_id, kind) WHERE run_id IS NOT NULL;
CREATE INDEX ledger_account ON ledger (account_id, created_at DESC, id DESC);

-- The ledger is append-only: refuse updates and deletes at the database.
CREATE FUNCTION ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are immutable';
END;
$$;
CREATE TRIGGER ledger_no_update BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable();

CREATE TABLE allocations (
    team_id text NOT NULL,
    user_id text NOT NULL,
    monthly_micros bigint NOT NULL CHECK (monthly_micros >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id)
);
