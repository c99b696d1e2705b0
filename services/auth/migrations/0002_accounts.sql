-- Users, teams, memberships and API keys. Key secrets are never stored: only sha256(token).

CREATE TABLE users (
    id          text PRIMARY KEY,
    email       text NOT NULL,
    plan        text NOT NULL CHECK (plan IN ('free', 'pro', 'team', 'enterprise')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE teams (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    plan        text NOT NULL CHECK (plan IN ('free', 'pro', 'team', 'enterprise')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A user belongs to at most one team (the team's plan becomes the user's effective plan).
CREATE TABLE memberships (
    user_id     text PRIMARY KEY REFERENCES users (id),
    team_id     text NOT NULL REFERENCES teams (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX memberships_team_idx ON memberships (team_id);

CREATE TABLE api_keys (
    id                  text PRIMARY KEY,
    user_id             text NOT NULL REFERENCES users (id),
    name                text NOT NULL,
    prefix              text NOT NULL,
    secret_hash         bytea NOT NULL,
    scopes              text[] NOT NULL,
    has_allowlist       boolean NOT NULL DEFAULT false,
    workflow_allowlist  text[] NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz,
    revoked_at          timestamptz,
    last_used_at        timestamptz
);
-- Authenticate is this one unique-index lookup.
CREATE UNIQUE INDEX api_keys_secret_hash_key ON api_keys (secret_hash);
CREATE INDEX api_keys_user_idx ON api_keys (user_id, created_at);
