-- Replicas on one database. Every expiry here is the database's clock (now()): replicas' clocks
-- may disagree; the database's is one.
-- A replica: a new id every start, so two processes never pass for one; alive while expires_at is ahead.
CREATE TABLE replicas (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  started_at BIGINT NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL
);

-- Who polls a stream: one replica at a time, until expires_at unless renewed. fence grows with
-- every new holding: a page commit names the fence it polled under and is refused unless the
-- lease is still that one (checked, row locked, in the commit's own transaction).
CREATE TABLE stream_leases (
  stream_id BIGINT PRIMARY KEY REFERENCES streams (id),
  replica_id TEXT,
  replica_name TEXT,
  fence BIGINT NOT NULL DEFAULT 0,
  expires_at TIMESTAMPTZ
);

-- A notification (a callout receipt) being worked on by a replica: others leave it alone until
-- claim_until, which outlasts the longest request the claimant may make for it.
ALTER TABLE notifications ADD COLUMN claimed_by TEXT;
ALTER TABLE notifications ADD COLUMN claim_until TIMESTAMPTZ;
CREATE INDEX notifications_claimed ON notifications (instance) WHERE status = 'pending' AND claimed_by IS NOT NULL;
ALTER TABLE callouts ADD COLUMN claimed_by TEXT;
ALTER TABLE callouts ADD COLUMN claim_until TIMESTAMPTZ;
