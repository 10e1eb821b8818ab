-- Notes that do not move a request (health alerts, renames, issues reported) are filed under
-- the state of their time when the timeline is read, not under the one they were written with.
-- Entries written before this cannot be told apart and keep their state.
ALTER TABLE timeline ADD COLUMN remark INTEGER NOT NULL DEFAULT 0;
