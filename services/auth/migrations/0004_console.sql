-- The console's people: passwords (argon2id), one-time invites, server-side sessions and
-- failed sign-ins (for the per-email and per-IP limits). Tokens are stored as sha256 only.

CREATE TABLE passwords (
    user_id     text PRIMARY KEY REFERENCES users (id),
    hash        text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE invites (
    token_hash  bytea PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

CREATE TABLE sessions (
    token_hash  bytea PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

CREATE TABLE login_failures (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL,
    client_ip   text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_email_idx ON login_failures (lower(email), at);
CREATE INDEX login_failures_ip_idx ON login_failures (client_ip, at);
