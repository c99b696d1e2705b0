-- A key may pin workflows to a version: {"wf_...": 3}. Runs it creates of such a workflow
-- run that version unless the call names another (issue 16).
ALTER TABLE api_keys ADD COLUMN version_pins jsonb NOT NULL DEFAULT '{}';
