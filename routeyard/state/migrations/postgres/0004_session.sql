-- Agent sessions (docs/sessions.md): each record names the session it belongs to, so the
-- decision log and /v1/stats can filter and group by it.
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS session text;
CREATE INDEX IF NOT EXISTS decisions_session ON decisions (session, time)
    WHERE session IS NOT NULL;  -- a record without a session costs the index nothing
