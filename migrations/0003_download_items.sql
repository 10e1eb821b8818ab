-- The film or episodes each download was grabbed for (`season:episode`, space separated), so
-- a grab found to be an upgrade later (its availability applied after it) gives its items back
-- to the download they had. Downloads written before this have none and are left as they are.
ALTER TABLE downloads ADD COLUMN items TEXT NOT NULL DEFAULT '';
