-- What a team member may do with the team's workflows (issue 16): admin (also archive),
-- member (create, edit, publish, run; the default), viewer (read and run).
ALTER TABLE memberships ADD COLUMN role text NOT NULL DEFAULT 'member'
    CHECK (role IN ('admin', 'member', 'viewer'));
