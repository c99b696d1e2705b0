-- Workflows people build and publish themselves (issue 16).
--
-- Ownership: a user's (owner_user_id), a team's (owner_team_id: every member may use and
-- edit it), or neither: the operator's shared catalog, applied from files.
-- Authoring: `draft` is the definition being edited (NULL once published as is);
-- publishing freezes it into the next workflow_versions row (1, 2, ...), with who and a
-- note. A run of the draft pins the draft as it was: its definition is kept as version
-- -<draft_revision>, so a run's (workflow_id, workflow_version) always names an
-- immutable definition. `current_version` is the latest published version (0: none yet).
ALTER TABLE workflows
    ADD COLUMN owner_user_id text,
    ADD COLUMN owner_team_id text,
    ADD COLUMN draft jsonb,
    ADD COLUMN draft_revision int NOT NULL DEFAULT 0,
    ADD COLUMN draft_updated_at timestamptz,
    ADD COLUMN archived_at timestamptz;
CREATE INDEX workflows_owner_user_idx ON workflows (owner_user_id) WHERE owner_user_id IS NOT NULL;
CREATE INDEX workflows_owner_team_idx ON workflows (owner_team_id) WHERE owner_team_id IS NOT NULL;

ALTER TABLE workflow_versions
    ADD COLUMN published_by text,           -- the user who published it; NULL: applied from a file
    ADD COLUMN note text NOT NULL DEFAULT '';
