-- A run may rerun another from one of its stages (issue 18): it records which, and the
-- outputs of the stages before that one are copied into it instead of executed again.
ALTER TABLE runs ADD COLUMN rerun_of text;
